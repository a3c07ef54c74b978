"""Dictionary matching on pyahocorasick: whole words only, longest match wins, no overlaps.

Text and terms go through the same tokeniser (lower-cased word runs; punctuation other than
apostrophes and dashes is a token of its own; a possessive "'s" is dropped), and the automaton
runs over the space-joined token string. Matches therefore start and end on word boundaries
by construction, and "Crohn's disease", "Crohn disease" and "crohn’s  disease" are one key.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import ahocorasick

# Apostrophes and dashes separate words but are not tokens; a possessive 's goes too.
_SEPARATORS = str.maketrans({c: " " for c in "'’‘`´-‐‑‒–—―"})
_POSSESSIVE = re.compile(r"(?<=\w)['’`´]s\b")
_TOKEN = re.compile(r"[^\W_]+|[^\w\s]")


def tokenize(text: str) -> tuple[list[str], list[int], list[int]]:
    """Lower-cased tokens of ``text`` with their start and end character offsets."""
    clean = _POSSESSIVE.sub("  ", text).translate(_SEPARATORS)
    lowered = clean.lower()
    if len(lowered) != len(clean):  # a few characters grow when lower-cased (e.g. "İ")
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in clean)
    words, starts, ends = [], [], []
    for m in _TOKEN.finditer(lowered):
        words.append(m.group())
        s, e = m.span()
        starts.append(s)
        ends.append(e)
    return words, starts, ends


def normalize(term: str) -> str:
    """The matching key of a term: its tokens joined by single spaces."""
    return " ".join(tokenize(term)[0])


class Match(NamedTuple):
    start: int
    end: int
    label: str
    concept: str
    source: str
    term: str


@dataclass(frozen=True)
class Entry:
    """What a key means. ``case`` set: only match when the surface has exactly this casing
    (acronyms such as "ALL" or "MS" that are ordinary words in lower case)."""

    label: str
    concept: str
    source: str
    case: str | None = None


class Matcher:
    """Find lexicon terms in text; build once (or load a pickled automaton), match many notes."""

    def __init__(self, automaton: "ahocorasick.Automaton"):
        self.automaton = automaton

    @classmethod
    def build(cls, entries: Iterable[tuple[str, Entry]]) -> "Matcher":
        """``entries`` are ``(normalised key, Entry)``; the last entry for a key wins."""
        auto = ahocorasick.Automaton()
        for key, entry in entries:
            if key:
                auto.add_word(f" {key} ", (key.count(" ") + 1, key, entry))
        auto.make_automaton()
        return cls(auto)

    def __len__(self) -> int:
        return len(self.automaton)

    def find(self, text: str) -> list[Match]:
        """Non-overlapping matches in text order: longer (more tokens) first, then leftmost."""
        words, starts, ends = tokenize(text)
        if not words or not len(self.automaton):
            return []
        joined = " " + " ".join(words) + " "
        # position of each token in ``joined``, to turn an automaton end index into a token index
        jpos, p = [], 1
        for w in words:
            jpos.append(p)
            p += len(w) + 1
        found = []
        for end_idx, (ntok, key, entry) in self.automaton.iter(joined):
            last = bisect.bisect_right(jpos, end_idx - 1) - 1
            first = last - ntok + 1
            s, e = starts[first], ends[last]
            if entry.case is not None and " ".join(text[s:e].split()) != entry.case:
                continue
            found.append((ntok, first, last, s, e, key, entry))
        found.sort(key=lambda m: (-m[0], m[1]))
        taken = bytearray(len(words))
        out = []
        for ntok, first, last, s, e, key, entry in found:
            if any(taken[first : last + 1]):
                continue
            taken[first : last + 1] = b"\x01" * (last - first + 1)
            out.append(Match(s, e, entry.label, entry.concept, entry.source, key))
        out.sort()
        return out
