"""clinical-distill: distil expensive clinical entity extractors into small, fast students."""
from distill.documents import DEFAULT_LABELS, DISEASE, GOLD, MEDICATION, SILVER, SYMPTOM, Document, Span, SpanError

__version__ = "0.1.0"
__all__ = ["Document", "Span", "SpanError", "DEFAULT_LABELS", "MEDICATION", "DISEASE", "SYMPTOM", "GOLD", "SILVER"]
