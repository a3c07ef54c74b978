"""Self-training: the student re-labels the unlabelled notes, and its confident spans that the
teacher missed join the silver layer for the next round.

Why it can beat the teacher: a dictionary misses every surface form it does not list, while a
student trained on the dictionary's hits also fires on unlisted words in the same contexts. Adding
only spans the student is confident about, and only where the silver layer is silent, keeps the
teacher's decisions and fills some of its gaps. The threshold is picked on the gold dev set (model
selection, like early stopping): no gold label reaches training.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from distill.documents import GOLD, SILVER, Document, Span

PRED = "pred"
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass
class MergeReport:
    """How many student spans were added to the silver layer (per label), and how many were left out."""

    threshold: float
    added: Counter = field(default_factory=Counter)
    below_threshold: int = 0
    overlapping: int = 0

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "added": dict(self.added), "added_total": sum(self.added.values()),
                "below_threshold": self.below_threshold, "overlapping_silver": self.overlapping}


def add_confident_spans(silver: Sequence[Document], predicted: Sequence[Document], threshold: float,
                        layer: str = SILVER, pred_layer: str = PRED) -> tuple[list[Document], MergeReport]:
    """``silver`` documents with each predicted span of score >= ``threshold`` that overlaps no
    span of ``layer`` added to that layer (source ``self-train``); documents are matched by id."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"self-training threshold must be in [0, 1], got {threshold}")
    preds = {d.id: d for d in predicted}
    missing = [d.id for d in silver if d.id not in preds]
    if missing:
        raise ValueError(f"{len(missing)} silver documents have no student prediction (e.g. {missing[:3]})")
    rep = MergeReport(threshold)
    out = []
    for doc in silver:
        kept = list(doc.spans(layer))
        new: list[Span] = []
        for s in preds[doc.id].spans(pred_layer):
            if s.score is None or s.score < threshold:
                rep.below_threshold += 1
            elif any(s.start < k.end and k.start < s.end for k in kept):
                rep.overlapping += 1
            else:
                new.append(Span(s.start, s.end, s.label, s.text, "self-train", score=s.score))
                rep.added[s.label] += 1
        out.append(doc.with_layers(**{layer: sorted(kept + new, key=lambda x: (x.start, x.end))}))
    return out, rep


def pick_threshold(dev_gold: Sequence[Document], dev_pred: Sequence[Document], labels: Sequence[str],
                   thresholds: Sequence[float] = THRESHOLDS, pred_layer: str = PRED) -> tuple[float, dict[float, float]]:
    """The threshold whose confident student spans score the highest relaxed precision-weighted
    F1 (F0.5) on gold dev: added spans must above all be right, since they become training labels."""
    from distill.metrics import score

    if not dev_gold:
        raise ValueError("picking a self-training threshold needs gold dev documents (data.dev)")
    by_t: dict[float, float] = {}
    for t in thresholds:
        kept = [d.with_layers(**{pred_layer: [s for s in d.spans(pred_layer) if (s.score or 0.0) >= t]}) for d in dev_pred]
        m = score(dev_gold, kept, gold_layer=GOLD, pred_layer=pred_layer, labels=labels, match="relaxed", bootstrap=0).micro
        p, r = m.precision, m.recall
        by_t[t] = round(1.25 * p * r / (0.25 * p + r), 4) if p + r else 0.0
    best = max(by_t, key=lambda t: (by_t[t], -t))
    return best, by_t
