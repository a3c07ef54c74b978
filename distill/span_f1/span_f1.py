"""Span-level P/R/F1 for clinical NER as a local Hugging Face ``evaluate`` metric.

Load it without the hub: ``evaluate.load(distill.span_f1.PATH)`` (the folder holding this
file). It is a thin adapter over :mod:`distill.metrics`, so scores are identical to
``distill evaluate``.
"""
import datasets
import evaluate

from distill.documents import DEFAULT_LABELS, Document, Span
from distill.metrics import score

_DESCRIPTION = "Span-level precision/recall/F1 (exact or relaxed match) per label, micro and macro."
_KWARGS = """
predictions / references: one list per document of {"start": int, "end": int, "label": str}.
match: "exact" (default) or "relaxed"; labels: label set (default MEDICATION, DISEASE, SYMPTOM);
bootstrap: number of document resamples for 95% CIs (default 0: none).
"""

_SPANS = [{"start": datasets.Value("int64"), "end": datasets.Value("int64"), "label": datasets.Value("string")}]  # a list of structs (not Sequence, which datasets turns into a dict of lists)


class SpanF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": _SPANS, "references": _SPANS}),
        )

    def _compute(self, predictions, references, match="exact", labels=DEFAULT_LABELS, bootstrap=0):
        gold, pred = [], []
        for i, (p, r) in enumerate(zip(predictions, references)):
            text = " " * max((s["end"] for s in [*p, *r]), default=0)  # offsets only: no note text here
            gold.append(_doc(str(i), text, r))
            pred.append(_doc(str(i), text, p))
        rep = score(gold, pred, "gold", "gold", labels=list(labels), match=match, bootstrap=bootstrap)
        out = {"precision": rep.micro.precision, "recall": rep.micro.recall, "f1": rep.micro.f1, "macro_f1": rep.macro_f1}
        for label, s in rep.labels.items():
            out[f"{label}_f1"] = s.f1
            if s.f1_ci:
                out[f"{label}_f1_ci"] = s.f1_ci
        if rep.micro.f1_ci:
            out["f1_ci"] = rep.micro.f1_ci
        return out


def _doc(doc_id: str, text: str, spans) -> Document:
    return Document(doc_id, text, layers={"gold": [Span(s["start"], s["end"], s["label"], text[s["start"] : s["end"]]) for s in spans]})
