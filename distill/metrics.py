"""Span-level precision / recall / F1, exact and relaxed, with document-level bootstrap CIs.

- exact: same start, end and label.
- relaxed: same label and overlapping offsets, matched one-to-one (a long prediction cannot
  claim several gold spans); the matching is a maximum one (augmenting paths after a greedy
  start), so the count never depends on the order spans are listed in.

Bootstrap resamples *documents* (not spans), because spans within a note are correlated.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from distill.documents import DEFAULT_LABELS, GOLD, Document, Span

MATCHES = ("exact", "relaxed")


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: "Counts") -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class LabelScore:
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    support: int
    f1_ci: tuple[float, float] | None = None


@dataclass
class Report:
    """Scores for one system under one match mode; ``problems`` lists what was not scored."""

    match: str
    labels: dict[str, LabelScore]
    micro: LabelScore
    macro_f1: float
    documents: int
    problems: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _max_matching(n_gold: int, pairs: list[tuple[int, int, int]]) -> int:
    """Size of a maximum one-to-one matching of overlapping (gold, prediction) pairs: greedy by
    overlap first, then augmenting paths (Kuhn), so a prediction overlapping two gold spans never
    costs a match that another assignment would make."""
    adj: dict[int, list[int]] = {}
    for _, i, j in sorted(pairs):
        adj.setdefault(i, []).append(j)
    owner: dict[int, int] = {}  # prediction -> gold
    matched: dict[int, int] = {}  # gold -> prediction
    for i, js in adj.items():  # greedy start (largest overlaps first within each gold)
        for j in js:
            if j not in owner:
                owner[j], matched[i] = i, j
                break

    def augment(root: int) -> None:
        """One augmenting path from an unmatched gold span, by explicit-stack DFS (no recursion
        limit on long, dense notes)."""
        seen: set[int] = set()
        stack = [(root, iter(adj[root]))]
        path: list[tuple[int, int]] = []  # (gold, prediction) edges taken so far
        while stack:
            i, it = stack[-1]
            j = next((x for x in it if x not in seen), None)
            if j is None:
                stack.pop()
                if path:
                    path.pop()
                continue
            seen.add(j)
            path.append((i, j))
            if j not in owner:  # free prediction: flip every edge on the path
                for gi, pj in path:
                    owner[pj], matched[gi] = gi, pj
                return
            stack.append((owner[j], iter(adj[owner[j]])))

    for i in range(n_gold):
        if i in adj and i not in matched:
            augment(i)
    return len(matched)


def _match_doc(gold: Sequence[Span], pred: Sequence[Span], match: str) -> dict[str, Counts]:
    """Per-label counts for one document."""
    out: dict[str, Counts] = {}
    labels = {s.label for s in gold} | {s.label for s in pred}
    for label in labels:
        g = sorted({(s.start, s.end) for s in gold if s.label == label})
        p = sorted({(s.start, s.end) for s in pred if s.label == label})
        if match == "exact":
            tp = len(set(g) & set(p))
        else:
            pairs = []
            for i, (gs, ge) in enumerate(g):
                for j, (ps, pe) in enumerate(p):
                    if ps >= ge:
                        break
                    ov = min(ge, pe) - max(gs, ps)
                    if ov > 0:
                        pairs.append((-ov, i, j))
            tp = _max_matching(len(g), pairs)
        out[label] = Counts(tp, len(p) - tp, len(g) - tp)
    return out


def _aggregate(per_doc: Sequence[dict[str, Counts]], labels: Sequence[str]) -> tuple[dict[str, Counts], Counts]:
    by_label = {l: Counts() for l in labels}
    micro = Counts()
    for d in per_doc:
        for label, c in d.items():
            if label in by_label:
                by_label[label].add(c)
                micro.add(c)
            else:  # a prediction with a label outside the set is wrong, not invisible
                micro.fp += c.fp
    return by_label, micro


def _score_of(c: Counts, ci: tuple[float, float] | None = None) -> LabelScore:
    return LabelScore(c.precision, c.recall, c.f1, c.tp, c.fp, c.fn, c.tp + c.fn, ci)


def _by_id(docs: Iterable[Document], side: str) -> dict[str, Document]:
    out: dict[str, Document] = {}
    for d in docs:
        if d.id in out:
            raise ValueError(f"two {side} documents have the id {d.id!r}; ids must be unique to pair gold with predictions")
        out[d.id] = d
    return out


def pair_documents(
    gold_docs: Iterable[Document], pred_docs: Iterable[Document]
) -> tuple[list[tuple[Document, Document | None]], dict[str, Any]]:
    """Pair predictions with gold by id; report missing, extra and text-mismatched documents.
    A repeated id on either side is an error: one of the two would silently shadow the other."""
    gold = _by_id(gold_docs, "gold")
    preds = _by_id(pred_docs, "prediction")
    problems: dict[str, Any] = {}
    missing = [i for i in gold if i not in preds]
    extra = [i for i in preds if i not in gold]
    mismatched = [i for i in gold if i in preds and preds[i].text != gold[i].text]
    if missing:
        problems["missing_documents"] = {"count": len(missing), "examples": missing[:5]}
    if extra:
        problems["extra_documents"] = {"count": len(extra), "examples": extra[:5]}
    if mismatched:
        problems["text_mismatch_documents"] = {"count": len(mismatched), "examples": mismatched[:5]}
    pairs = [(g, preds.get(i) if i not in mismatched else None) for i, g in gold.items()]
    return pairs, problems


def score(
    gold_docs: Iterable[Document],
    pred_docs: Iterable[Document],
    gold_layer: str = GOLD,
    pred_layer: str | None = None,
    labels: Sequence[str] = DEFAULT_LABELS,
    match: str = "exact",
    bootstrap: int = 1000,
    seed: int = 0,
) -> Report:
    """Score one prediction layer against gold.

    A gold document with no prediction counts as predicting nothing (its spans are false
    negatives) and is listed in ``problems``; predicted labels outside ``labels`` are counted
    in ``problems`` rather than silently ignored. ``pred_layer=None`` takes each prediction
    document's only layer (or ``silver`` / ``pred`` when there are several).
    """
    if match not in MATCHES:
        raise ValueError(f"match must be one of {MATCHES}, got {match!r}")
    pairs, problems = pair_documents(gold_docs, pred_docs)
    if pred_layer is not None:
        present = [p for _, p in pairs if p is not None]
        if present and not any(pred_layer in p.layers for p in present):  # a misspelt layer would score 0
            have = sorted({name for p in present for name in p.layers})
            raise ValueError(f"no prediction document has a layer {pred_layer!r}; layers present: {have or 'none'}")
    unknown: dict[str, int] = {}
    gold_outside: dict[str, int] = {}
    per_doc: list[dict[str, Counts]] = []
    for g, p in pairs:
        gold_spans = g.layers.get(gold_layer, [])
        for s in gold_spans:
            if s.label not in labels:
                gold_outside[s.label] = gold_outside.get(s.label, 0) + 1
        pred_spans = _pick_layer(p, pred_layer) if p is not None else []
        for s in pred_spans:
            if s.label not in labels:
                unknown[s.label] = unknown.get(s.label, 0) + 1
        per_doc.append(_match_doc(gold_spans, pred_spans, match))
    if unknown:
        problems["unknown_labels"] = unknown
    if gold_outside:  # not scored (the label set decides what counts), but never invisible
        problems["gold_labels_not_scored"] = {"count": sum(gold_outside.values()),
                                              "examples": [f"{k} ({v})" for k, v in sorted(gold_outside.items())]}
    by_label, micro = _aggregate(per_doc, labels)
    cis = bootstrap_f1(per_doc, labels, bootstrap, seed) if bootstrap else {}
    label_scores = {l: _score_of(c, cis.get(l)) for l, c in by_label.items()}
    active = [s for s in label_scores.values() if s.tp + s.fp + s.fn]  # labels absent from both sides don't drag macro down
    macro = sum(s.f1 for s in active) / len(active) if active else 0.0
    return Report(match, label_scores, _score_of(micro, cis.get("micro")), macro, len(per_doc), problems)


def _pick_layer(doc: Document, layer: str | None) -> list[Span]:
    if layer is not None:
        return doc.layers.get(layer, [])
    if len(doc.layers) == 1:
        return next(iter(doc.layers.values()))
    for name in ("pred", "silver"):
        if name in doc.layers:
            return doc.layers[name]
    if not doc.layers:
        return []
    raise ValueError(f"document {doc.id!r} has several layers {sorted(doc.layers)}; name the one to score")


def bootstrap_f1(
    per_doc: Sequence[Mapping[str, Counts]], labels: Sequence[str], n: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CI of F1 per label and micro, resampling documents."""
    if not per_doc:
        return {}
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {l: [] for l in [*labels, "micro"]}
    k = len(per_doc)
    for _ in range(n):
        draw = [per_doc[rng.randrange(k)] for _ in range(k)]
        by_label, micro = _aggregate(draw, labels)
        for l, c in by_label.items():
            samples[l].append(c.f1)
        samples["micro"].append(micro.f1)
    out = {}
    for l, vals in samples.items():
        vals.sort()
        lo = vals[int((alpha / 2) * (n - 1))]
        hi = vals[int((1 - alpha / 2) * (n - 1))]
        out[l] = (lo, hi)
    return out


def check_predictions(docs: Iterable[Document], labels: Sequence[str]) -> dict[str, Any]:
    """Problems in a predictions file that would otherwise be scored silently wrong."""
    unknown: dict[str, int] = {}
    examples: list[str] = []
    for d in docs:
        for layer in d.layers.values():
            for s in layer:
                if s.label not in labels:
                    unknown[s.label] = unknown.get(s.label, 0) + 1
                    if len(examples) < 5:
                        examples.append(f"{d.id}:{s.start}-{s.end} {s.label} {s.text!r}")
    return {"unknown_labels": unknown, "examples": examples} if unknown else {}
