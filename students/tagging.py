"""BIO tagging shared by training (torch) and the deployed ONNX runtime (no torch).

This module imports only numpy, the ``tokenizers`` library and the plain data objects, so the
runtime predictor can reuse exactly the windows and span decoding the student was trained with.

Why word level: a span is tagged on *words* (the tokenizer's pre-tokenized words; only the first
sub-token of a word carries a label, the others are -100 and ignored by the loss), so decoded spans
are unions of whole words and can never end inside a word piece sequence.

Public functions
- ``bio_tags(labels)`` -> ``["O", "B-L1", "I-L1", ...]``; ``tag_label(tag)``.
- ``prepare_tokenizer(tok)``: a copy of a ``tokenizers.Tokenizer`` (or HF fast tokenizer) with
  truncation and padding off; ``load_tokenizer(model_dir)`` reads ``tokenizer.json``.
- ``encode_text(tokenizer, text, max_length, stride)`` -> ``EncodedText``: one encoding of the whole
  note (offsets, word ids, word extents) and its ``windows`` (content tokens wrapped in the
  model's special tokens; windows start and end on word boundaries; consecutive windows overlap by
  about ``stride`` tokens).
- ``resolve_overlaps(spans)`` -> ``(kept, dropped)``: longest span wins (documented policy).
- ``spans_to_word_tags(enc, spans, tags)`` -> ``(word tag ids, misaligned spans)``.
- ``window_label_ids(enc, word_tags)`` -> per window label ids (-100 on specials / non-first pieces).
- ``align_word_targets(enc, src_offsets, src_probs, tags)``: soft targets stored per word by
  ``distill.aggregate`` -> a distribution for each of this tokenizer's words.
- ``window_soft_targets(enc, word_probs)`` -> per window ``(n_positions, n_tags)`` arrays (rows of
  ignored positions are all zero).
- ``batch_arrays(windows, pad_id)`` -> padded numpy ``input_ids`` / ``attention_mask`` /
  ``token_type_ids`` for a list of windows.
- ``merge_windows(enc, window_logits)`` -> ``(n_words, n_tags)`` scores, each word taken from the
  window where it is most central (no duplicates across windows).
- ``decode_words(enc, word_scores, tags, text)`` -> ``list[Span]`` (argmax, BIO repair, softmax
  score); ``decode(enc, window_logits, tags, text)`` does merge + decode in one call.
- ``write_labels_json(path, labels, max_length, stride, **extra)`` / ``read_labels_json(path)``;
  ``check_against_config(model_dir, meta, tokenizer)``: labels.json / tokenizer vs config.json.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from tokenizers import Tokenizer

from distill.documents import Document, Span

OUTSIDE = "O"
IGNORE_INDEX = -100
LABELS_FILE = "labels.json"
LABELS_FORMAT = 1


class TaggingError(ValueError):
    """Inputs the tagger cannot represent (unknown labels, bad labels.json, empty windows)."""


# --- tag set -----------------------------------------------------------------------------------


def bio_tags(labels: Sequence[str]) -> list[str]:
    """``O`` first, then ``B-x``/``I-x`` for each label in the given order."""
    if not labels:
        raise TaggingError("the label set is empty")
    if len(set(labels)) != len(labels):
        raise TaggingError(f"duplicate labels in {list(labels)}")
    tags = [OUTSIDE]
    for lab in labels:
        tags += [f"B-{lab}", f"I-{lab}"]
    return tags


def tag_label(tag: str) -> str | None:
    """``B-DISEASE`` -> ``DISEASE``; ``O`` -> None."""
    return None if tag == OUTSIDE else tag[2:]


def _tag_arrays(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each tag: is_begin, is_inside, label index (-1 for O)."""
    labels: list[str] = []
    is_b = np.zeros(len(tags), bool)
    is_i = np.zeros(len(tags), bool)
    lab_idx = np.full(len(tags), -1)
    for i, t in enumerate(tags):
        if t == OUTSIDE:
            continue
        if t[:2] not in ("B-", "I-"):
            raise TaggingError(f"not a BIO tag: {t!r}")
        lab = t[2:]
        if lab not in labels:
            labels.append(lab)
        lab_idx[i] = labels.index(lab)
        (is_b if t[0] == "B" else is_i)[i] = True
    return is_b, is_i, lab_idx


# --- tokenizer ---------------------------------------------------------------------------------


def prepare_tokenizer(tok: Any) -> Tokenizer:
    """A private copy with truncation and padding off (a saved tokenizer.json often has both on,
    which would silently cut long notes); accepts an HF fast tokenizer too."""
    backend = getattr(tok, "backend_tokenizer", tok)
    if not isinstance(backend, Tokenizer):
        raise TaggingError(f"need a fast (Rust) tokenizer, got {type(tok).__name__}")
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def load_tokenizer(model_dir: str | os.PathLike) -> Tokenizer:
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise TaggingError(f"{path} not found: the model directory needs a fast tokenizer file")
    return prepare_tokenizer(Tokenizer.from_file(str(path)))


def special_template(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the model expects before and after a single sequence
    (``[CLS]``/``[SEP]`` for BERT, ``<s>``/``</s>`` for RoBERTa), read off an encoding of "a"."""
    enc = tokenizer.encode("a", add_special_tokens=True)
    mask = enc.special_tokens_mask
    first = mask.index(0) if 0 in mask else len(mask)
    last = len(mask) - mask[::-1].index(0) if 0 in mask else len(mask)
    return list(enc.ids[:first]), list(enc.ids[last:])


# --- encoding ----------------------------------------------------------------------------------


@dataclass
class Window:
    """A model input: ``input_ids`` = prefix specials + doc tokens [start, end) + suffix specials.
    ``token_index[p]`` is the doc token at position p, or -1 on special tokens."""

    start: int
    end: int
    input_ids: list[int]
    token_index: np.ndarray


@dataclass
class EncodedText:
    """One tokenization of a whole note plus its windows and word extents (char offsets)."""

    offsets: np.ndarray  # (n_tokens, 2)
    word_of_token: np.ndarray  # (n_tokens,) word index
    word_first_token: np.ndarray  # (n_words,)
    word_extents: np.ndarray  # (n_words, 2), whitespace-trimmed
    windows: list[Window] = field(default_factory=list)

    @property
    def n_words(self) -> int:
        return len(self.word_first_token)


def _words(text: str, offsets: Sequence[tuple[int, int]], word_ids: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(offsets)
    word_of_token = np.zeros(n, np.int64)
    firsts: list[int] = []
    extents: list[list[int]] = []
    prev: int | None = None
    for t in range(n):
        wid = word_ids[t]
        a, b = offsets[t]
        if t == 0 or wid is None or wid != prev:
            firsts.append(t)
            extents.append([a, b])
        else:
            extents[-1][0] = min(extents[-1][0], a)
            extents[-1][1] = max(extents[-1][1], b)
        word_of_token[t] = len(firsts) - 1
        prev = wid
    for ext in extents:  # byte-level BPE offsets may include the leading space
        a, b = ext
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        ext[0], ext[1] = a, b
    return (
        word_of_token,
        np.asarray(firsts, np.int64),
        np.asarray(extents, np.int64).reshape(-1, 2),
    )


def encode_text(tokenizer: Tokenizer, text: str, max_length: int = 256, stride: int = 64) -> EncodedText:
    """Tokenize the whole note once and cut it into overlapping windows on word boundaries.

    ``tokenizer`` must come from ``prepare_tokenizer``/``load_tokenizer`` (no truncation).
    """
    prefix, suffix = special_template(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if budget < 2:
        raise TaggingError(f"max_length={max_length} leaves no room for tokens")
    if not 0 <= stride < budget:
        raise TaggingError(f"stride must be in [0, {budget}) for max_length={max_length}, got {stride}")
    enc = tokenizer.encode(text, add_special_tokens=False)
    offsets = np.asarray(enc.offsets, np.int64).reshape(-1, 2)
    word_of_token, firsts, extents = _words(text, enc.offsets, enc.word_ids)
    out = EncodedText(offsets, word_of_token, firsts, extents)
    n = len(enc.ids)
    is_first = np.zeros(n + 1, bool)
    is_first[firsts] = True
    is_first[n] = True
    ids = enc.ids
    s = 0
    while s < n:
        e = min(s + budget, n)
        if e < n:  # end on a word start so no word is split, unless one word exceeds the budget
            back = e
            while back > s and not is_first[back]:
                back -= 1
            if back > s:
                e = back
        tok_idx = np.concatenate([np.full(len(prefix), -1), np.arange(s, e), np.full(len(suffix), -1)])
        out.windows.append(Window(s, e, prefix + list(ids[s:e]) + suffix, tok_idx))
        if e >= n:
            break
        nxt = max(e - stride, s + 1)
        back = nxt
        while back > s + 1 and not is_first[back]:
            back -= 1
        s = back if is_first[back] else nxt
    return out


# --- spans -> tags -----------------------------------------------------------------------------


def resolve_overlaps(spans: Iterable[Span]) -> tuple[list[Span], list[Span]]:
    """BIO cannot hold overlapping spans: keep the longest (then earliest, then label order),
    drop any span overlapping a kept one. Exact duplicates (same offsets and label) collapse
    silently; every other drop is returned so callers can count it."""
    uniq = {(s.start, s.end, s.label): s for s in spans}
    order = sorted(uniq.values(), key=lambda s: (-(s.end - s.start), s.start, s.label))
    kept: list[Span] = []
    dropped: list[Span] = []
    for s in order:
        if any(s.start < k.end and k.start < s.end for k in kept):
            dropped.append(s)
        else:
            kept.append(s)
    kept.sort(key=lambda s: (s.start, s.end))
    return kept, dropped


def word_hits(enc: EncodedText, span: Span) -> np.ndarray:
    """Indices of the (non-empty) words that ``span`` overlaps."""
    starts, ends = enc.word_extents[:, 0], enc.word_extents[:, 1]
    return np.nonzero((starts < span.end) & (ends > span.start) & (ends > starts))[0]


def spans_to_word_tags(enc: EncodedText, spans: Sequence[Span], tags: Sequence[str]) -> tuple[np.ndarray, list[Span]]:
    """Tag each word B-/I-label if it overlaps a span (first overlapped word gets B-), else O.

    ``spans`` must not overlap (see ``resolve_overlaps``). Returns the tag ids and the spans whose
    boundaries do not fall on word boundaries: tagged, widened to whole words, unless they cover
    no word at all (only whitespace or special bytes; ``word_hits`` is empty), which cannot be tagged.
    """
    tag_id = {t: i for i, t in enumerate(tags)}
    word_tags = np.zeros(enc.n_words, np.int64)
    starts, ends = enc.word_extents[:, 0], enc.word_extents[:, 1]
    misaligned: list[Span] = []
    for s in spans:
        b_tag, i_tag = f"B-{s.label}", f"I-{s.label}"
        if b_tag not in tag_id:
            raise TaggingError(f"label {s.label!r} is not in the tag set {list(tags)}")
        hit = word_hits(enc, s)
        if len(hit) == 0:
            misaligned.append(s)
            continue
        if starts[hit[0]] != s.start or ends[hit[-1]] != s.end:
            misaligned.append(s)
        word_tags[hit[0]] = tag_id[b_tag]
        word_tags[hit[1:]] = tag_id[i_tag]
    return word_tags, misaligned


def _first_subtokens(enc: EncodedText, w: Window) -> tuple[np.ndarray, np.ndarray]:
    """Positions in window ``w`` that hold a word's first sub-token, and those words' indices
    (where word-level targets go; other sub-tokens are ignored by the loss)."""
    idx = w.token_index
    pos = np.nonzero(idx >= 0)[0]
    tok = idx[pos]
    first = enc.word_first_token[enc.word_of_token[tok]] == tok
    return pos[first], enc.word_of_token[tok[first]]


def window_label_ids(enc: EncodedText, word_tags: np.ndarray) -> list[np.ndarray]:
    """Per window: the word's tag on the first sub-token of each word, -100 elsewhere."""
    out = []
    for w in enc.windows:
        lab = np.full(len(w.input_ids), IGNORE_INDEX, np.int64)
        pos, words = _first_subtokens(enc, w)
        lab[pos] = word_tags[words]
        out.append(lab)
    return out


def align_word_targets(enc: EncodedText, src_offsets: np.ndarray, src_probs: np.ndarray, tags: Sequence[str]) -> np.ndarray:
    """Map per-word soft targets stored by ``distill.aggregate`` (its own word segmentation,
    ``src_offsets`` (m, 2)) onto this tokenizer's words: each word takes the distribution of the
    source word containing its first character; when it starts inside that source word, its
    B- mass moves to I- (it continues the mention)."""
    src_offsets = np.asarray(src_offsets).reshape(-1, 2)
    src_probs = np.asarray(src_probs, np.float32)
    if src_probs.shape != (len(src_offsets), len(tags)):
        raise TaggingError(f"soft targets have shape {src_probs.shape}, expected ({len(src_offsets)}, {len(tags)})")
    out = np.zeros((enc.n_words, len(tags)), np.float32)
    out[:, 0] = 1.0
    if enc.n_words == 0 or len(src_offsets) == 0:
        return out
    starts = enc.word_extents[:, 0]
    j = np.searchsorted(src_offsets[:, 0], starts, side="right") - 1
    ok = (j >= 0) & (src_offsets[np.clip(j, 0, None), 1] > starts)
    out[ok] = src_probs[j[ok]]
    inside = ok & (src_offsets[np.clip(j, 0, None), 0] < starts)
    if inside.any():
        is_b, _, _ = _tag_arrays(tags)
        for b in np.nonzero(is_b)[0]:
            out[inside, b + 1] += out[inside, b]  # layout: B-x at b, I-x at b+1
            out[inside, b] = 0.0
    return out


def window_soft_targets(enc: EncodedText, word_probs: np.ndarray) -> list[np.ndarray]:
    """Per window ``(n_positions, n_tags)``: the word distribution on first sub-tokens, zero rows
    elsewhere (a zero row means "ignored" to the distillation loss)."""
    out = []
    for w in enc.windows:
        tgt = np.zeros((len(w.input_ids), word_probs.shape[1]), np.float32)
        pos, words = _first_subtokens(enc, w)
        tgt[pos] = word_probs[words]
        out.append(tgt)
    return out


def batch_arrays(windows: Sequence[Window], pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded int64 arrays for a batch of windows."""
    width = max(len(w.input_ids) for w in windows)
    ids = np.full((len(windows), width), pad_id, np.int64)
    mask = np.zeros((len(windows), width), np.int64)
    for i, w in enumerate(windows):
        ids[i, : len(w.input_ids)] = w.input_ids
        mask[i, : len(w.input_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


# --- logits -> spans ---------------------------------------------------------------------------


def merge_windows(enc: EncodedText, window_logits: Sequence[np.ndarray]) -> np.ndarray:
    """Word scores ``(n_words, n_tags)``: each word's first sub-token read from the window where
    that token is farthest from a window edge, so overlapping windows never duplicate a span."""
    if len(window_logits) != len(enc.windows):
        raise TaggingError(f"got logits for {len(window_logits)} windows, the text has {len(enc.windows)}")
    if enc.n_words == 0:
        return np.zeros((0, window_logits[0].shape[-1] if len(window_logits) else 1), np.float32)
    n_tags = np.asarray(window_logits[0]).shape[-1]
    out = np.zeros((enc.n_words, n_tags), np.float32)
    best = np.full(enc.n_words, -1.0)
    for w, logits in zip(enc.windows, window_logits):
        logits = np.asarray(logits)
        pos = np.nonzero(w.token_index >= 0)[0]
        tok = w.token_index[pos]
        words = enc.word_of_token[tok]
        first = enc.word_first_token[words] == tok
        pos, tok, words = pos[first], tok[first], words[first]
        centrality = np.minimum(tok - w.start, w.end - 1 - tok).astype(float)
        better = centrality > best[words]
        out[words[better]] = logits[pos[better]]
        best[words[better]] = centrality[better]
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


_ALNUM = re.compile(r"[^\W_]")  # letters and digits: "diabetes_mellitus" is two words to widening


def decode_words(enc: EncodedText, word_scores: np.ndarray, tags: Sequence[str], text: str, source: str = "") -> list[Span]:
    """Argmax tag per word -> spans. An ``I-x`` that does not continue an ``x`` mention starts one
    (the usual lenient BIO repair). Leading/trailing punctuation-only words are dropped from a
    span ("heparin-" -> "heparin"; a span of only punctuation is not emitted). A span edge that
    falls between two word characters (possible with tokenizers that split inside words) is
    widened to the whole word. Score = mean probability of the chosen tags of the kept words."""
    if enc.n_words == 0:
        return []
    probs = _softmax(np.asarray(word_scores, np.float64))
    pred = probs.argmax(axis=1)
    is_b, is_i, lab_idx = _tag_arrays(tags)
    spans: list[Span] = []
    cur: list[int] | None = None  # [start word, end word, label idx]

    def has_alnum(w: int) -> bool:
        return any(ch.isalnum() for ch in text[enc.word_extents[w, 0] : enc.word_extents[w, 1]])

    def close(c: list[int]) -> None:
        lo, hi = c[0], c[1]
        while lo <= hi and not has_alnum(lo):  # a mention never starts/ends on "-", "/", "'"...
            lo += 1
        while hi >= lo and not has_alnum(hi):
            hi -= 1
        if lo > hi:
            return
        a = int(enc.word_extents[lo, 0])
        b = int(enc.word_extents[hi, 1])
        while a > 0 and _ALNUM.match(text[a - 1]) and _ALNUM.match(text[a]):
            a -= 1
        while b < len(text) and _ALNUM.match(text[b - 1]) and _ALNUM.match(text[b]):
            b += 1
        if b <= a:
            return
        score = float(probs[np.arange(lo, hi + 1), pred[lo : hi + 1]].mean())
        label = tag_label(tags[pred[lo]])
        assert label is not None
        spans.append(Span(a, b, label, text[a:b], source, score=round(score, 4)))

    for w in range(enc.n_words):
        t = pred[w]
        if enc.word_extents[w, 1] <= enc.word_extents[w, 0]:
            continue  # a word made only of whitespace/special bytes
        if lab_idx[t] < 0:
            if cur is not None:
                close(cur)
                cur = None
        elif is_i[t] and cur is not None and cur[2] == lab_idx[t]:
            cur[1] = w
        else:
            if cur is not None:
                close(cur)
            cur = [w, w, int(lab_idx[t])]
    if cur is not None:
        close(cur)
    # widening can make neighbours touch or overlap: keep the first of any overlapping pair
    out: list[Span] = []
    for s in spans:
        if out and s.start < out[-1].end:
            continue
        out.append(s)
    return out


def decode(enc: EncodedText, window_logits: Sequence[np.ndarray], tags: Sequence[str], text: str, source: str = "") -> list[Span]:
    """Merge the windows' logits and decode spans in one call."""
    return decode_words(enc, merge_windows(enc, window_logits), tags, text, source)


# --- labels.json -------------------------------------------------------------------------------


def write_labels_json(path: str | os.PathLike, labels: Sequence[str], max_length: int, stride: int, **extra: Any) -> Path:
    """Write ``labels.json`` (a file, or ``<dir>/labels.json`` when given a directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / LABELS_FILE
    data = {"format": LABELS_FORMAT, "labels": list(labels), "tags": bio_tags(labels),
            "max_length": int(max_length), "stride": int(stride), **extra}
    p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return p


def read_labels_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``labels.json`` (a file, or a model directory containing one)."""
    p = Path(path)
    if p.is_dir():
        p = p / LABELS_FILE
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaggingError(f"{p} not found: not a student model directory") from None
    except json.JSONDecodeError as e:
        raise TaggingError(f"{p}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise TaggingError(f"{p}: expected a JSON object, got {type(data).__name__}")
    fmt = data.get("format", LABELS_FORMAT)
    if not isinstance(fmt, int) or not 1 <= fmt <= LABELS_FORMAT:
        raise TaggingError(f"{p}: unknown labels.json format {fmt!r} (this version reads format {LABELS_FORMAT}); "
                           f"upgrade clinical-distill or re-train the model")
    for key in ("labels", "tags", "max_length", "stride"):
        if key not in data:
            raise TaggingError(f"{p}: missing {key!r}")
    if data["tags"] != bio_tags(data["labels"]):
        raise TaggingError(f"{p}: tags {data['tags']} do not match labels {data['labels']}")
    return data


def check_against_config(model_dir: str | os.PathLike, meta: dict[str, Any], tokenizer: Tokenizer) -> None:
    """labels.json and the tokenizer must belong to the model in ``config.json`` (skipped when
    there is none): a labels.json from another student with the same tag count would silently
    rename every span, and a larger vocabulary or ``max_length`` would crash inference mid-run."""
    d = Path(model_dir)
    cfg_path, labels_path = d / "config.json", d / LABELS_FILE
    if not cfg_path.is_file():
        return
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TaggingError(f"{cfg_path}: invalid JSON ({e.msg})") from None
    id2label = cfg.get("id2label") or {}
    want = [id2label.get(str(i)) for i in range(len(id2label))]
    generic = want == [f"LABEL_{i}" for i in range(len(want))]  # transformers' placeholder names
    if id2label and not generic and list(meta["tags"]) != want:
        raise TaggingError(f"{labels_path} lists tags {list(meta['tags'])} but {cfg_path} id2label gives {want}: "
                           f"labels.json belongs to another model; restore the labels.json saved with this model")
    vocab = cfg.get("vocab_size")
    n_tok = tokenizer.get_vocab_size(with_added_tokens=True)
    if isinstance(vocab, int) and n_tok > vocab:
        raise TaggingError(f"{d / 'tokenizer.json'} has {n_tok} tokens but {cfg_path} has vocab_size {vocab}: the "
                           f"tokenizer belongs to another model; restore the tokenizer files saved with this model")
    max_pos = cfg.get("max_position_embeddings")
    if isinstance(max_pos, int) and int(meta["max_length"]) > max_pos:
        raise TaggingError(f"{labels_path} has max_length {meta['max_length']} but {cfg_path} allows "
                           f"{max_pos} positions: set max_length <= {max_pos} in labels.json (re-train or re-export)")


PRED_LAYER = "pred"


class WindowPredictor:
    """The inference loop shared by the torch and ONNX predictors, so that both window and decode
    notes identically by construction. A subclass sets ``tokenizer``, ``tags``, ``max_length``,
    ``stride``, ``source``, ``docs_per_chunk`` and implements ``_logits(windows)`` (one array of
    shape [len(window), n_tags] per window, in order). ``per_note`` runs each note's windows as
    their own batch (dynamic int8 models scale activations per batch, so batching notes together
    would make a note's spans depend on its neighbours)."""

    tokenizer: Tokenizer
    tags: Sequence[str]
    max_length: int
    stride: int
    source: str = ""
    docs_per_chunk: int = 64
    per_note: bool = False

    def _logits(self, windows: Sequence[Window]) -> Sequence[np.ndarray]:
        raise NotImplementedError

    def _encoded(self, texts: Sequence[str]) -> Iterator[tuple[str, EncodedText, list[np.ndarray]]]:
        """Each text with its encoding and its windows' logits, batched ``docs_per_chunk`` notes at a time."""
        texts = list(texts)
        for c in range(0, len(texts), self.docs_per_chunk):
            chunk = texts[c : c + self.docs_per_chunk]
            encs = [encode_text(self.tokenizer, t, self.max_length, self.stride) for t in chunk]
            if self.per_note:
                logits = [x for e in encs for x in (self._logits(e.windows) if e.windows else [])]
            else:
                flat = [w for e in encs for w in e.windows]
                logits = list(self._logits(flat)) if flat else []
            k = 0
            for text, enc in zip(chunk, encs):
                n = len(enc.windows)
                yield text, enc, logits[k : k + n]
                k += n

    def predict_texts(self, texts: Sequence[str]) -> list[list[Span]]:
        """Spans for each text (source = the model name)."""
        return [decode(enc, logits, self.tags, text, self.source) if enc.windows else []
                for text, enc, logits in self._encoded(texts)]

    def word_distributions(self, texts: Sequence[str], temperature: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: word extents ``(n_words, 2)`` and the model's tag distribution per word
        ``softmax(logits / temperature)`` -- the soft targets a smaller student distils from
        (the same layout as ``distill.aggregate.SoftTargets``)."""
        out = []
        for _, enc, logits in self._encoded(texts):
            scores = merge_windows(enc, logits) if enc.windows else np.zeros((0, len(self.tags)), np.float32)
            out.append((enc.word_extents.astype(np.int32), _softmax(np.asarray(scores, np.float64) / temperature).astype(np.float32)))
        return out

    def predict(self, docs: Iterable[Document], layer: str = PRED_LAYER) -> list[Document]:
        """Copies of ``docs`` with the predictions as layer ``layer``."""
        docs = list(docs)
        spans = self.predict_texts([d.text for d in docs])
        return [d.with_layers(**{layer: s}) for d, s in zip(docs, spans)]
