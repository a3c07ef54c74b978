"""LLM entity strings -> character offsets, and long notes -> overlapping chunks.

LLMs are asked for *strings*, not offsets (they cannot count characters). Each string is
found in the text by exact match, then case/whitespace-normalised match, then fuzzy match
(rapidfuzz), always on word boundaries. A string found nowhere is reported as unaligned —
never given invented offsets: small models quote text that is not in the note (their
prompt's examples, paraphrases), and that must show up as a number, not as silver labels.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from rapidfuzz import fuzz, process

from distill.documents import Span


@dataclass(frozen=True)
class Entity:
    """One mention as the model returned it: the string, its label, optional nearby words."""

    text: str
    label: str
    context: str | None = None


@dataclass
class Alignment:
    spans: list[Span] = field(default_factory=list)
    unaligned: list[Entity] = field(default_factory=list)
    exact: int = 0
    normalised: int = 0
    fuzzy: int = 0


_WORD = re.compile(r"\w")


def _on_boundaries(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not (_WORD.match(before) and _WORD.match(text[start])) and not (_WORD.match(after) and _WORD.match(text[end - 1]))


def _exact(text: str, s: str) -> list[tuple[int, int]]:
    out, i = [], text.find(s)
    while i >= 0:
        if _on_boundaries(text, i, i + len(s)):
            out.append((i, i + len(s)))
        i = text.find(s, i + 1)
    return out


def _normalised(text: str, s: str) -> list[tuple[int, int]]:
    tokens = s.split()
    if not tokens:
        return []
    pattern = r"\s+".join(re.escape(t) for t in tokens)
    return [m.span() for m in re.finditer(pattern, text, re.IGNORECASE) if _on_boundaries(text, *m.span())]


def _fuzzy(text: str, s: str, threshold: float) -> list[tuple[int, int]]:
    """The best-scoring run of whole words (as many words as ``s``, give or take one) if its
    similarity to ``s`` is at least ``threshold`` — typos and small inflections, nothing looser."""
    if len(s) < 4:  # short strings fuzzy-match everywhere
        return []
    words = [m.span() for m in re.finditer(r"\S+", text)]
    n = len(s.split())
    cands: dict[str, tuple[int, int]] = {}
    for size in (n - 1, n, n + 1):
        if size < 1:
            continue
        for i in range(len(words) - size + 1):
            a, b = words[i][0], words[i + size - 1][1]
            a, b = _trim_punct(text, a, b)
            if b > a:
                cands.setdefault(text[a:b], (a, b))
    if not cands:
        return []
    best = process.extractOne(s, list(cands), scorer=fuzz.ratio, processor=str.lower, score_cutoff=threshold)
    return [cands[best[0]]] if best else []


_OPENER = {")": "(", "]": "["}


def _trim_punct(text: str, a: int, b: int) -> tuple[int, int]:
    """Strip punctuation around a candidate, keeping a closing bracket only when it closes one
    opened inside ("HbA1c (A1c)"), not a stray one ("hypertension)" of "(hypertension)")."""
    while a < b and not text[a].isalnum():
        a += 1
    while b > a and not text[b - 1].isalnum():
        c = text[b - 1]
        if c in _OPENER and text.count(_OPENER[c], a, b - 1) > text.count(c, a, b - 1):
            break
        b -= 1
    return a, b


def _is_acronym(s: str) -> bool:
    """Short all-caps strings ("MS", "AS", "ALL") mean something else in lower case."""
    return len(s) <= 5 and s.isupper()


def _pick_by_context(text: str, hits: list[tuple[int, int]], context: str, window: int = 60) -> tuple[int, int]:
    """The occurrence whose preceding words best match ``context`` (the prompt asks for the
    words just before the mention; the mention itself is left out so it cannot score), the
    earliest on a tie."""
    return max(hits, key=lambda h: (fuzz.partial_ratio(context.lower(), text[max(0, h[0] - window) : h[0]].lower()), -h[0]))


def align(
    text: str,
    entities: Iterable[Entity],
    labels: Sequence[str] | None = None,
    offset: int = 0,
    fuzzy_threshold: float = 90.0,
    source: str = "",
) -> Alignment:
    """Map ``entities`` to spans of ``text`` (offsets shifted by ``offset``).

    Without a context every occurrence is labelled (a drug named twice is a drug twice); with
    a context only the occurrence whose preceding words match it best, and entities listed
    with the same words take different occurrences while unclaimed ones remain. Entities
    whose label is not in ``labels`` are reported as unaligned too, so nothing is dropped silently.
    """
    result = Alignment()
    claimed: set[tuple[int, int]] = set()  # occurrences already given to an entity with a context
    for ent in entities:
        s = ent.text.strip()
        if not s or (labels is not None and ent.label not in labels):
            result.unaligned.append(ent)
            continue
        hits, kind = _exact(text, s), "exact"
        if not _is_acronym(s):  # "Chest pain" at a sentence start is the same mention
            more = [h for h in _normalised(text, s) if h not in hits]
            if more and not hits:
                kind = "normalised"
            hits = sorted(hits + more)
        if not hits:
            hits, kind = _fuzzy(text, s, fuzzy_threshold), "fuzzy"
        if not hits:
            result.unaligned.append(ent)
            continue
        setattr(result, kind, getattr(result, kind) + 1)
        if ent.context and len(hits) > 1:
            hit = _pick_by_context(text, [h for h in hits if h not in claimed] or hits, ent.context)
            claimed.add(hit)
            hits = [hit]
        for a, b in hits:
            result.spans.append(Span(a + offset, b + offset, ent.label, text[a:b], source=source))
    return result


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Deduplicate and keep non-overlapping spans, longest first (then earliest).

    Overlaps arise from chunk overlap (the same mention found twice) and from nested answers
    ("chest pain" and "pain"); a token tagger needs one label per token.
    """
    kept: list[Span] = []
    taken: list[tuple[int, int]] = []
    for sp in sorted(set(spans), key=lambda s: (-(s.end - s.start), s.start, s.label)):
        if any(sp.start < b and a < sp.end for a, b in taken):
            continue
        kept.append(sp)
        taken.append((sp.start, sp.end))
    return sorted(kept, key=lambda s: (s.start, s.end, s.label))


def chunk_text(text: str, max_chars: int, overlap: int = 200) -> list[tuple[int, int]]:
    """Split ``text`` into ``(start, end)`` windows of at most ``max_chars`` characters that
    overlap by about ``overlap`` characters, cutting at sentence or line ends where possible
    (else at whitespace), so that a mention cut by one window is whole in the next."""
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    if overlap >= max_chars // 2:
        raise ValueError(f"overlap ({overlap}) must be less than half of max_chars ({max_chars})")
    n = len(text)
    if n <= max_chars:
        return [(0, n)]
    chunks: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + max_chars, n)
        if end < n:
            end = _cut(text, start + max_chars // 2, end)
        chunks.append((start, end))
        if end >= n:
            return chunks
        lo = max(end - overlap, start + 1)
        nxt = _cut(text, lo, end, prefer_late=False)
        if nxt >= end:  # the window's only sentence end is this chunk's own end: keep an overlap
            ws = re.search(r"\s+", text[lo:end])
            nxt = lo + ws.end() if ws and lo + ws.end() < end else end
        start = nxt if nxt > start else end


_SENT_END = re.compile(r"(?<=[.!?;])\s+|\n+")
#: a period after these is no sentence end: an initial ("C. difficile") or an abbreviation
#: ("St. John's wort"); cutting there would split a mention
_NOT_SENT_END = re.compile(r"(?:\b[A-Z]|\b(?i:st|dr|mr|mrs|ms|vs|e\.g|i\.e|approx|no))\.$")


def _cut(text: str, lo: int, hi: int, prefer_late: bool = True) -> int:
    """A cut position in [lo, hi]: after a sentence end if any, else at whitespace, else hi."""
    window = text[lo:hi]
    ends = [m.end() for m in _SENT_END.finditer(window)
            if window[m.start()] == "\n" or not _NOT_SENT_END.search(text, max(0, lo + m.start() - 8), lo + m.start())]
    if not ends:
        ends = [m.end() for m in re.finditer(r"\s+", window)]
    if not ends:
        return hi
    return lo + (ends[-1] if prefer_late else ends[0])
