"""Location of the local ``evaluate`` metric: ``evaluate.load(distill.span_f1.PATH)``."""
from pathlib import Path

PATH = str(Path(__file__).parent / "span_f1.py")
