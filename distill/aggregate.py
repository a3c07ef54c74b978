"""Combine teacher layers into one ``silver`` layer, plus soft BIO targets for distillation.

Methods (the hard ``silver`` layer):
- ``union``: every teacher span; where spans overlap, the longest wins.
- ``priority``: teachers in the order given; a span is kept unless it overlaps one already kept
  from a teacher earlier in the list.
- ``majority``: word-level vote; a word gets label ``l`` when more of the teachers that can emit
  ``l`` say ``l`` there than say something else (a tie means O).
- ``weighted``: the same vote, with each teacher's "yes" weighted by its precision on ``l`` and
  its "no" (silence) weighted by its recall on ``l``, both measured on a small gold dev set
  (``estimate_weights``). A teacher that never emits ``l`` casts no vote on ``l``, so a drug
  dictionary's silence does not argue against a disease.

- ``label_model``: a Dawid–Skene label model (as in Snorkel's LabelModel or skweak's generative
  step, here word-level naive Bayes fitted by EM): each teacher gets a learned confusion matrix
  P(says o | true class c) over {O, labels}, with no gold. A teacher's silence is then worth exactly
  what its fitted matrix says: a drug list that never emits DISEASE says O as often on diseases as
  on other words, so its O carries no evidence against a disease (no dilution), while a precise
  teacher's "yes" outweighs a noisy one's. The silver layer and the soft targets come from the
  posterior. It needs at least two teacher layers with spans.

Soft targets (all methods): for each word, ``p_l = yes_l / (yes_l + no_l)`` from the weighted
votes (unit weights when no dev set is given), ``P(O) = prod(1 - p_l)``, the remaining mass shared
between labels in proportion to ``p_l`` and split into ``B-``/``I-`` by how the voters tagged
the word. Stored **per word** (``\\w+`` runs and single punctuation marks) in ``<silver>.soft.npz``
next to the silver JSONL: per-character storage would be ~5x larger and say nothing more
(teacher spans start and end on word edges), while per-sub-token storage would tie the file to one
student tokenizer. ``students.tagging.align_word_targets`` maps them onto any tokenizer's words.

Bad input: spans with labels outside the label set raise ``AggregationError`` (or are dropped and
counted with ``on_unknown="drop"``); overlapping spans *inside one teacher layer* are resolved
longest-first and counted (``overlaps_resolved``); spans not on word edges are widened to whole
words by the word-level methods and counted (``widened``).
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from distill.documents import DEFAULT_LABELS, GOLD, SILVER, Document, Span

log = logging.getLogger(__name__)

METHODS = ("union", "priority", "majority", "weighted", "label_model")
OUTSIDE = "O"
WORD_RE = re.compile(r"\w+|[^\w\s]")
SOFT_SUFFIX = ".soft.npz"


class AggregationError(ValueError):
    """Input that cannot be aggregated (unknown labels, missing layers, no documents)."""


@dataclass
class LabelWeight:
    """How far to trust a teacher on one label: precision weighs its yes, recall its silence."""

    precision: float = 1.0
    recall: float = 1.0


Weights = Mapping[str, Mapping[str, LabelWeight]]  # teacher -> label -> weight


@dataclass
class AggregationLog:
    """What aggregation changed or dropped; printed by the CLI, written to the training card."""

    documents: int = 0
    spans_in: Counter = field(default_factory=Counter)  # per teacher
    silver_spans: int = 0
    overlaps_resolved: Counter = field(default_factory=Counter)  # per teacher (inside one layer)
    cross_teacher_conflicts: int = 0  # union/priority: spans dropped for overlapping another teacher
    unknown_labels: Counter = field(default_factory=Counter)  # "teacher:label" -> count
    widened: int = 0  # word-level methods: teacher spans not on word edges
    missing_layers: Counter = field(default_factory=Counter)  # per teacher: docs without the layer
    label_model: list[str] = field(default_factory=list)  # the fitted label model's per-teacher accuracies

    def lines(self) -> list[str]:
        out = [f"documents: {self.documents}", f"silver spans: {self.silver_spans}"]
        for name, n in self.spans_in.items():
            out.append(f"teacher {name}: {n} spans in")
        for title, counter in (("overlapping spans resolved inside a layer (longest kept)", self.overlaps_resolved),
                               ("unknown labels dropped", self.unknown_labels),
                               ("documents without the layer (that teacher casts no vote there)", self.missing_layers)):
            for k, v in counter.items():
                out.append(f"{title}: {k}: {v}")
        if self.cross_teacher_conflicts:
            out.append(f"spans dropped for overlapping another teacher's span: {self.cross_teacher_conflicts}")
        if self.widened:
            out.append(f"teacher spans widened to word boundaries: {self.widened}")
        return out + self.label_model


def bio_tags(labels: Sequence[str]) -> list[str]:
    """Same layout as ``students.tagging.bio_tags``: O, then B-/I- per label."""
    return [OUTSIDE] + [f"{p}-{l}" for l in labels for p in ("B", "I")]


def word_offsets(text: str) -> np.ndarray:
    """``(n_words, 2)`` int32 character offsets of ``\\w+`` runs and single punctuation marks."""
    return np.asarray([m.span() for m in WORD_RE.finditer(text)], np.int32).reshape(-1, 2)


# --- weights -----------------------------------------------------------------------------------


def estimate_weights(dev_docs: Sequence[Document], layers: Sequence[str], labels: Sequence[str] = DEFAULT_LABELS,
                     gold_layer: str = GOLD, match: str = "relaxed", smoothing: float = 1.0) -> dict[str, dict[str, LabelWeight]]:
    """Per teacher, per label precision and recall on gold, with add-``smoothing`` counts so a
    label seen a handful of times does not get a weight of exactly 0 or 1."""
    from distill.metrics import score

    if not dev_docs:
        raise AggregationError("weighted aggregation needs gold dev documents to estimate weights")
    if not any(gold_layer in d.layers for d in dev_docs):  # weights from an empty gold would be noise
        raise AggregationError(f"none of the {len(dev_docs)} dev documents has a gold layer {gold_layer!r} "
                               f"to estimate weights against (pass the gold dev set, e.g. --dev-gold)")
    out: dict[str, dict[str, LabelWeight]] = {}
    for name in layers:
        rep = score(dev_docs, dev_docs, gold_layer=gold_layer, pred_layer=name, labels=labels, match=match, bootstrap=0)
        out[name] = {}
        for lab in labels:
            s = rep.labels[lab]
            emitted = s.tp + s.fp
            prec = (s.tp + smoothing) / (emitted + 2 * smoothing)
            rec = (s.tp + smoothing) / (s.tp + s.fn + 2 * smoothing)
            out[name][lab] = LabelWeight(prec, rec if emitted else 0.0)
    return out


# --- votes -------------------------------------------------------------------------------------


def _layer_spans(doc: Document, name: str, labels: Sequence[str], on_unknown: str, rep: AggregationLog) -> list[Span]:
    """A teacher layer with unknown labels handled and overlaps inside the layer resolved."""
    if name not in doc.layers:
        rep.missing_layers[name] += 1
        return []
    spans = []
    for s in doc.layers[name]:
        if s.label not in labels:
            if on_unknown == "error":
                raise AggregationError(
                    f"document {doc.id!r}, layer {name!r}: label {s.label!r} is not in the label set "
                    f"{list(labels)} (map it first, or pass on_unknown='drop' / --drop-unknown)"
                )
            rep.unknown_labels[f"{name}:{s.label}"] += 1
            continue
        spans.append(s)
    rep.spans_in[name] += len(spans)
    kept, dropped = longest_first(spans)
    if dropped:
        rep.overlaps_resolved[name] += len(dropped)
    return kept


def longest_first(spans: Iterable[Span]) -> tuple[list[Span], list[Span]]:
    """Non-overlapping subset: longest first, then earliest, then label; exact duplicates collapse."""
    uniq = {(s.start, s.end, s.label): s for s in spans}
    kept: list[Span] = []
    dropped: list[Span] = []
    for s in sorted(uniq.values(), key=lambda s: (-(s.end - s.start), s.start, s.label)):
        (dropped if any(s.start < k.end and k.start < s.end for k in kept) else kept).append(s)
    kept.sort(key=lambda s: (s.start, s.end))
    return kept, dropped


def _word_tags(offsets: np.ndarray, spans: Sequence[Span], labels: Sequence[str]) -> tuple[np.ndarray, int]:
    """Per word: 0 = O, 1 + 2*k = B-label k, 2 + 2*k = I-label k; and how many spans were widened."""
    tags = np.zeros(len(offsets), np.int64)
    widened = 0
    if not len(offsets):
        return tags, 0
    for s in spans:
        hit = np.nonzero((offsets[:, 0] < s.end) & (offsets[:, 1] > s.start))[0]
        if not len(hit):
            continue
        if offsets[hit[0], 0] != s.start or offsets[hit[-1], 1] != s.end:
            widened += 1
        k = labels.index(s.label)
        tags[hit[0]] = 1 + 2 * k
        tags[hit[1:]] = 2 + 2 * k
    return tags, widened


def _covers(docs: Sequence[Document], layers: Sequence[str], labels: Sequence[str]) -> dict[str, set[str]]:
    """Which labels each teacher ever emits: only those get a vote (see module docstring)."""
    out: dict[str, set[str]] = {n: set() for n in layers}
    for d in docs:
        for n in layers:
            out[n].update(s.label for s in d.layers.get(n, ()) if s.label in labels)
    return out


def word_distribution(tag_matrix: np.ndarray, yes_w: np.ndarray, no_w: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Votes -> (p_l per word and label, BIO distribution per word).

    ``tag_matrix`` (n_teachers, n_words) of tag codes; ``yes_w``/``no_w`` (n_teachers, n_labels).
    """
    n_t, n_w = tag_matrix.shape
    lab = np.where(tag_matrix > 0, (tag_matrix - 1) // 2, -1)  # label index or -1
    is_b = (tag_matrix > 0) & ((tag_matrix - 1) % 2 == 0)
    p = np.zeros((n_w, n_labels))
    b_frac = np.zeros((n_w, n_labels))
    for k in range(n_labels):
        says = lab == k  # (n_t, n_w)
        yes = (says * yes_w[:, k : k + 1]).sum(0)
        no = ((~says) * no_w[:, k : k + 1]).sum(0)
        tot = yes + no
        p[:, k] = np.divide(yes, tot, out=np.zeros(n_w), where=tot > 0)
        yes_b = ((says & is_b) * yes_w[:, k : k + 1]).sum(0)
        b_frac[:, k] = np.divide(yes_b, yes, out=np.ones(n_w), where=yes > 0)
    p_o = np.prod(1.0 - p, axis=1)
    mass = p.sum(1)
    share = np.divide(p, mass[:, None], out=np.zeros_like(p), where=mass[:, None] > 0) * (1.0 - p_o)[:, None]
    dist = np.zeros((n_w, 1 + 2 * n_labels))
    dist[:, 0] = p_o
    dist[:, 1::2] = share * b_frac
    dist[:, 2::2] = share * (1 - b_frac)
    return p, dist


def b_fraction(tag_matrix: np.ndarray, n_labels: int) -> np.ndarray:
    """Per word and label: the share of the teachers saying the label there who tag it B (1 where none do)."""
    lab = np.where(tag_matrix > 0, (tag_matrix - 1) // 2, -1)
    is_b = (tag_matrix > 0) & ((tag_matrix - 1) % 2 == 0)
    out = np.ones((tag_matrix.shape[1], n_labels))
    for k in range(n_labels):
        says = (lab == k).sum(0)
        out[:, k] = np.divide(((lab == k) & is_b).sum(0), says, out=np.ones(len(says)), where=says > 0)
    return out


def posterior_distribution(q: np.ndarray, tag_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label-model posterior ``(n_words, 1 + n_labels)`` -> (p_l per word, BIO distribution per word)."""
    n_labels = q.shape[1] - 1
    bf = b_fraction(tag_matrix, n_labels)
    dist = np.zeros((q.shape[0], 1 + 2 * n_labels))
    dist[:, 0] = q[:, 0]
    dist[:, 1::2] = q[:, 1:] * bf
    dist[:, 2::2] = q[:, 1:] * (1 - bf)
    return q[:, 1:], dist


def _decode_votes(doc: Document, offsets: np.ndarray, p: np.ndarray, dist: np.ndarray, labels: Sequence[str],
                  source: str, threshold: float = 0.5) -> list[Span]:
    """Word decision: the label with the highest p_l if above ``threshold``; B/I from the votes."""
    best = p.argmax(1) if p.size else np.zeros(0, int)
    on = p[np.arange(len(p)), best] > threshold if p.size else np.zeros(0, bool)
    spans: list[Span] = []
    cur: list = []  # [first word, last word, label idx]

    def close() -> None:
        a, b = int(offsets[cur[0], 0]), int(offsets[cur[1], 1])
        sc = float(p[cur[0] : cur[1] + 1, cur[2]].mean())
        spans.append(Span(a, b, labels[cur[2]], doc.text[a:b], source, score=round(sc, 4)))

    for w in range(len(offsets)):
        if not on[w]:
            if cur:
                close()
                cur = []
            continue
        k = int(best[w])
        begins = dist[w, 1 + 2 * k] >= dist[w, 2 + 2 * k]
        if cur and cur[2] == k and not begins:
            cur[1] = w
        else:
            if cur:
                close()
            cur = [w, w, k]
    if cur:
        close()
    return spans


# --- label model -------------------------------------------------------------------------------


@dataclass
class LabelModel:
    """Word-level Dawid–Skene: class prior ``prior[c]`` and per-teacher confusion
    ``confusion[t, c, o]`` = P(teacher t says o | true class c), classes and observations
    ``0 = O, 1 + k = labels[k]``. Fitted by EM from the teachers' votes alone."""

    layers: list[str]
    labels: list[str]
    prior: np.ndarray
    confusion: np.ndarray
    iterations: int = 0

    def posterior(self, obs: np.ndarray, present: np.ndarray) -> np.ndarray:
        """``obs`` (n_teachers, n_words) class codes, ``present`` (n_teachers,) bool: teachers
        whose layer the document lacks are left out of the product, not counted as O votes."""
        logq = np.broadcast_to(np.log(self.prior), (obs.shape[1], len(self.prior))).copy()
        logc = np.log(self.confusion)
        for t in np.nonzero(present)[0]:
            logq += logc[t][:, obs[t]].T  # (n_words, n_classes)
        logq -= logq.max(1, keepdims=True)
        q = np.exp(logq)
        return q / q.sum(1, keepdims=True)

    def summary(self) -> list[str]:
        """Per teacher and label: the fitted precision-like P(class l | says l) and recall P(says l | l)."""
        out = []
        for t, name in enumerate(self.layers):
            for k, lab in enumerate(self.labels, start=1):
                joint = self.prior[:, None] * self.confusion[t]  # (c, o)
                says = joint[:, k].sum()
                prec = joint[k, k] / says if says > 0 else 0.0
                out.append(f"label model: {name} {lab}: P(true | says) {prec:.2f}, P(says | true) {self.confusion[t, k, k]:.2f}")
        return out


def _class_codes(tag_matrix: np.ndarray) -> np.ndarray:
    """BIO tag codes -> class codes (0 = O, 1 + k = label k)."""
    return np.where(tag_matrix > 0, (tag_matrix - 1) // 2 + 1, 0)


def fit_label_model(obs: Sequence[np.ndarray], present: Sequence[np.ndarray], layers: Sequence[str],
                    labels: Sequence[str], iterations: int = 100, smoothing: float = 1.0, tol: float = 1e-4) -> LabelModel:
    """EM over all words of all documents. Initialised from a majority-style posterior (each
    teacher's yes counts, O from silence), so class indices keep their meaning (no label switching).

    Raises ``AggregationError`` for fewer than two teachers, or a teacher layer with no span at all
    (its accuracy cannot be estimated: the fit would be an arbitrary matrix, not NaNs in silence)."""
    n_t, n_c = len(layers), len(labels) + 1
    if n_t < 2:
        raise AggregationError(f"the label model learns how far to trust each teacher from their (dis)agreement, "
                               f"so it needs at least two teacher layers; got {list(layers)} (use 'majority' for one teacher)")
    said = np.zeros(n_t, np.int64)
    for o, pr in zip(obs, present):
        said += ((o > 0) & pr[:, None]).sum(1)
    empty = [layers[t] for t in range(n_t) if said[t] == 0]
    if empty:
        raise AggregationError(f"teacher layer(s) {empty} have no spans in any document: the label model cannot "
                               "estimate their accuracy (drop them from the layers)")
    if not sum(o.shape[1] for o in obs):
        raise AggregationError("the documents have no words to fit the label model on")
    # initial posterior: a label's share of the present teachers' votes, O from the rest
    qs = []
    for o, pr in zip(obs, present):
        counts = np.zeros((o.shape[1], n_c))
        for t in np.nonzero(pr)[0]:
            counts[np.arange(o.shape[1]), o[t]] += 1.0
        counts[:, 0] *= 0.5  # silence is weaker evidence than a yes
        qs.append(counts / np.maximum(counts.sum(1, keepdims=True), 1e-9))
    model = LabelModel(list(layers), list(labels), np.full(n_c, 1.0 / n_c), np.full((n_t, n_c, n_c), 1.0 / n_c))
    for it in range(1, iterations + 1):
        old = model.confusion
        prior = np.full(n_c, smoothing)
        conf = np.full((n_t, n_c, n_c), smoothing)
        for q, o, pr in zip(qs, obs, present):
            prior += q.sum(0)
            for t in np.nonzero(pr)[0]:
                for c_obs in range(n_c):
                    conf[t, :, c_obs] += q[o[t] == c_obs].sum(0)
        model.prior = prior / prior.sum()
        model.confusion = conf / conf.sum(2, keepdims=True)
        qs = [model.posterior(o, pr) for o, pr in zip(obs, present)]
        model.iterations = it
        if np.abs(model.confusion - old).max() < tol:
            break
    return model


# --- main entry --------------------------------------------------------------------------------


@dataclass
class SoftTargets:
    """Per document: word offsets ``(n, 2)`` and BIO probabilities ``(n, n_tags)``."""

    tags: list[str]
    docs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        """One compressed .npz: ids, concatenated offsets (int32) and probs (float16), doc pointers."""
        path = Path(path)
        ids = list(self.docs)
        lens = [len(self.docs[i][0]) for i in ids]
        ptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        n_tags = len(self.tags)
        offs = np.concatenate([self.docs[i][0] for i in ids]) if ids else np.zeros((0, 2), np.int32)
        probs = np.concatenate([self.docs[i][1] for i in ids]) if ids else np.zeros((0, n_tags))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, ids=np.asarray(ids, dtype=str), tags=np.asarray(self.tags, dtype=str), ptr=ptr,
                            offsets=offs.astype(np.int32), probs=probs.astype(np.float16))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SoftTargets":
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise AggregationError(f"{path}: not a soft-target file ({e})") from None
        with z:
            tags = [str(t) for t in z["tags"]]
            ptr, offs, probs = z["ptr"], z["offsets"], z["probs"].astype(np.float32)
            out = cls(tags)
            for k, i in enumerate(z["ids"]):
                a, b = ptr[k], ptr[k + 1]
                out.docs[str(i)] = (offs[a:b], probs[a:b])
        return out


def soft_targets_path(silver_path: str | os.PathLike) -> Path:
    """``runs/silver.jsonl`` -> ``runs/silver.soft.npz`` (also for .jsonl.gz)."""
    p = Path(silver_path)
    name = p.name
    for ext in (".jsonl.gz", ".jsonl", ".json"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return p.with_name(name + SOFT_SUFFIX)


@dataclass
class AggregateResult:
    docs: list[Document]
    soft: SoftTargets
    log: AggregationLog


def aggregate(
    docs: Sequence[Document],
    layers: Sequence[str],
    method: str = "majority",
    labels: Sequence[str] = DEFAULT_LABELS,
    weights: Weights | None = None,
    out_layer: str = SILVER,
    on_unknown: str = "error",
    threshold: float = 0.5,
) -> AggregateResult:
    """Write ``out_layer`` on copies of ``docs`` from teacher ``layers`` and compute soft targets.

    ``weights`` (from ``estimate_weights``) is required for ``weighted``; for the other methods
    it only shapes the soft targets (unit weights when omitted).
    """
    if method not in METHODS:
        raise AggregationError(f"unknown method {method!r}; choose one of {METHODS}")
    if not docs:
        raise AggregationError("no documents to aggregate")
    if not layers:
        raise AggregationError("name at least one teacher layer")
    if on_unknown not in ("error", "drop"):
        raise AggregationError("on_unknown must be 'error' or 'drop'")
    present = {n for d in docs for n in d.layers}
    absent = [n for n in layers if n not in present]
    if absent:
        raise AggregationError(f"no document has the layer(s) {absent}; layers present: {sorted(present)}")
    if method == "weighted" and weights is None:
        raise AggregationError("method 'weighted' needs weights: estimate them on a gold dev set (--dev)")
    if not 0.0 <= threshold < 1.0:  # below 0 every word would get a label, at 1 none could
        raise AggregationError(f"threshold must be in [0, 1) (the vote share a label needs), got {threshold}")
    labels = list(labels)
    if weights is not None:
        missing = [n for n in layers if n not in weights]
        if missing:
            raise AggregationError(f"no weights for teacher(s) {missing}")
    covers = _covers(docs, layers, labels)
    yes_w = np.zeros((len(layers), len(labels)))
    no_w = np.zeros((len(layers), len(labels)))
    for t, name in enumerate(layers):
        for k, lab in enumerate(labels):
            w = weights[name][lab] if weights is not None else LabelWeight()
            if lab in covers[name]:
                yes_w[t, k], no_w[t, k] = w.precision, w.recall
    # majority: one vote per teacher that can emit the label, whatever the weights (they only shape the soft targets)
    can_emit = np.array([[float(lab in covers[name]) for lab in labels] for name in layers]).reshape(len(layers), len(labels))
    vote_w = (yes_w, no_w) if method == "weighted" else (can_emit, can_emit)

    rep = AggregationLog(documents=len(docs))
    soft = SoftTargets(bio_tags(labels))
    prepared = []  # per document: teacher spans, word offsets, tag matrix, which layers it has
    for doc in docs:
        per_teacher = [_layer_spans(doc, n, labels, on_unknown, rep) for n in layers]
        offsets = word_offsets(doc.text)
        tag_rows = []
        for spans in per_teacher:
            tags, widened = _word_tags(offsets, spans, labels)
            tag_rows.append(tags)
            if method in ("majority", "weighted", "label_model"):
                rep.widened += widened
        tag_matrix = np.stack(tag_rows) if tag_rows else np.zeros((0, len(offsets)), np.int64)
        present = np.array([n in doc.layers for n in layers], bool)
        prepared.append((per_teacher, offsets, tag_matrix, present))
    model = None
    if method == "label_model":
        model = fit_label_model([_class_codes(m) for _, _, m, _ in prepared], [pr for *_, pr in prepared], layers, labels)
        rep.label_model = model.summary()
        if len(layers) == 2:  # measured: open+rxnorm fell from 0.69 to 0.18 relaxed F1 on MACCROBAT
            rep.label_model.insert(0, "label model: warning: two teachers do not identify a Dawid-Skene model (it "
                                      "cannot tell which one errs); use three or more sources, or 'majority'")
    out_docs = []
    for doc, (per_teacher, offsets, tag_matrix, present) in zip(docs, prepared):
        # a teacher that did not label this document (no layer) casts no vote here, not an O vote
        mask = present[:, None].astype(float)
        if model is not None:
            p, dist = posterior_distribution(model.posterior(_class_codes(tag_matrix), present), tag_matrix)
        else:
            _, dist = word_distribution(tag_matrix, yes_w * mask, no_w * mask, len(labels))
        soft.docs[doc.id] = (offsets, dist.astype(np.float32))
        if method == "union":
            silver, dropped = longest_first(s.with_source(out_layer) for spans in per_teacher for s in spans)
            rep.cross_teacher_conflicts += len(dropped)
        elif method == "priority":
            silver = []
            for spans in per_teacher:
                for s in spans:
                    if any(s.start < k.end and k.start < s.end for k in silver):
                        rep.cross_teacher_conflicts += 1
                    else:
                        silver.append(s.with_source(out_layer))
        elif model is not None:
            silver = _decode_votes(doc, offsets, p, dist, labels, out_layer, threshold)
        else:
            p, hard_dist = word_distribution(tag_matrix, vote_w[0] * mask, vote_w[1] * mask, len(labels))
            silver = _decode_votes(doc, offsets, p, hard_dist, labels, out_layer, threshold)
        rep.silver_spans += len(silver)
        out_docs.append(doc.with_layers(**{out_layer: silver}))
    for line in rep.lines():
        log.debug("aggregate: %s", line)  # the CLI and the runner print these lines themselves
    return AggregateResult(out_docs, soft, rep)


def agreement(docs: Sequence[Document], layers: Sequence[str], result_layer: str = SILVER,
              labels: Sequence[str] = DEFAULT_LABELS) -> dict[str, dict[str, float]]:
    """How well each teacher agrees with the result: P/R/F1 of its layer against ``result_layer``
    (relaxed match), plus the exact-match F1."""
    from distill.metrics import score

    out = {}
    for name in layers:
        rel = score(docs, docs, gold_layer=result_layer, pred_layer=name, labels=labels, match="relaxed", bootstrap=0)
        ex = score(docs, docs, gold_layer=result_layer, pred_layer=name, labels=labels, match="exact", bootstrap=0)
        out[name] = {"precision": rel.micro.precision, "recall": rel.micro.recall, "f1": rel.micro.f1,
                     "exact_f1": ex.micro.f1, "spans": rel.micro.tp + rel.micro.fp}
    return out
