"""Dictionary matching on pyahocorasick: whole words only, longest match wins, no overlaps.

Text and terms go through the same tokeniser (lower-cased word runs; punctuation other than
apostrophes and dashes is a token of its own; a possessive "'s" is dropped; a regular plural
"-s"/"-ies"/"-sses" is folded to the singular and British "oe"/"ae"/"-our" to American), and
the automaton runs over the space-joined token string. Matches therefore start and end on word
boundaries by construction, and "Crohn's disease", "crohn’s  disease", "renal cysts" and
"oedema" find "Crohn disease", "renal cyst" and "edema" without storing variant keys.
"""
from __future__ import annotations

import bisect
import pickle
import re
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import ahocorasick

# Apostrophes and dashes separate words but are not tokens; a possessive 's goes too.
_SEPARATORS = str.maketrans({c: " " for c in "'’‘`´-‐‑‒–—―"})
_POSSESSIVE = re.compile(r"(?<=\w)['’`´]s\b")
_TOKEN = re.compile(r"[^\W_]+|[^\w\s]")
# Lexicon label of terms that claim their words but produce no span (lab analytes and the like).
IGNORE = "IGNORE"


def tokenize(text: str) -> tuple[list[str], list[int], list[int]]:
    """Lower-cased tokens of ``text`` with their start and end character offsets."""
    clean = _POSSESSIVE.sub("  ", text).translate(_SEPARATORS)
    lowered = clean.lower()
    if len(lowered) != len(clean):  # a few characters grow when lower-cased (e.g. "İ")
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in clean)
    words, starts, ends = [], [], []
    for m in _TOKEN.finditer(lowered):
        w = m.group()
        if len(w) > 3:
            if w[-1] == "s" and w[-2] not in "siu":
                w = w[:-3] + "y" if w.endswith("ies") and len(w) > 4 else w[:-2] if w.endswith("sses") else w[:-1]
            if len(w) > 5 and ("ae" in w or "oe" in w or w.endswith("our")):
                w = _american(w)
        words.append(w)
        s, e = m.span()
        starts.append(s)
        ends.append(e)
    return words, starts, ends


def _american(word: str) -> str:
    """One key for British and American spellings: oedema/edema, anaemia/anemia, tumour/tumor."""
    word = word.replace("ae", "e").replace("oe", "e")
    return word[:-3] + "or" if word.endswith("our") else word


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
    """Find lexicon terms in text; build once (or load a saved automaton), match many notes.

    The automaton stores plain ints (``entry index * 16 + token count``) rather than Python
    objects, so a saved automaton loads without unpickling 150k objects (the ≤ 2 s load target).
    """

    MAX_TOKENS = 15

    def __init__(self, automaton: "ahocorasick.Automaton", entries: list[Entry], modifiers: dict[str, str] | None = None):
        self.automaton = automaton
        self.entries = entries
        self.modifiers = modifiers or {}

    @classmethod
    def build(cls, items: Iterable[tuple[str, Entry]], modifiers: dict[str, str] | None = None) -> "Matcher":
        """``items`` are ``(normalised key, Entry)``; the last entry for a key wins."""
        auto = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        entries: list[Entry] = []
        index: dict[Entry, int] = {}
        for key, entry in items:
            ntok = key.count(" ") + 1
            if not key or ntok > cls.MAX_TOKENS:
                continue
            idx = index.setdefault(entry, len(entries))
            if idx == len(entries):
                entries.append(entry)
            auto.add_word(f" {key} ", idx * 16 + ntok)
        auto.make_automaton()
        return cls(auto, entries, modifiers)

    def save(self, path: str) -> None:
        """Write the automaton to ``path`` and the entry table beside it (``path + '.entries'``)."""
        self.automaton.save(path)
        with open(path + ".entries", "wb") as fh:
            pickle.dump([tuple(e.__dict__.values()) for e in self.entries], fh, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path: str, modifiers: dict[str, str] | None = None) -> "Matcher":
        auto = ahocorasick.load(path, pickle.loads)
        with open(path + ".entries", "rb") as fh:
            entries = [Entry(*t) for t in pickle.load(fh)]
        return cls(auto, entries, modifiers)

    def __len__(self) -> int:
        return len(self.automaton)

    def lookup(self, key: str) -> Entry | None:
        """The entry of a normalised key, or None."""
        hit = self.automaton.get(f" {key} ", None)
        return None if hit is None else self.entries[hit >> 4]

    def items(self) -> Iterable[tuple[str, Entry]]:
        for key, value in self.automaton.items():
            yield key.strip(), self.entries[value >> 4]

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
        entries = self.entries
        for end_idx, value in self.automaton.iter(joined):
            ntok, entry = value & 15, entries[value >> 4]
            last = bisect.bisect_right(jpos, end_idx - 1) - 1
            first = last - ntok + 1
            s, e = starts[first], ends[last]
            if entry.case is not None and " ".join(text[s:e].split()) != entry.case:
                continue
            found.append((ntok, first, last, s, e, entry))
        found.sort(key=lambda m: (-m[0], m[1]))
        taken = bytearray(len(words))
        out = []
        for ntok, first, last, s, e, entry in found:
            if any(taken[first : last + 1]):
                continue
            taken[first : last + 1] = b"\x01" * (last - first + 1)
            if entry.label == IGNORE:
                continue
            if self.modifiers and first < last:
                first, entry = self._trim(words, first, last, entry)
                s = starts[first]
            out.append(Match(s, e, entry.label, entry.concept, entry.source, " ".join(words[first : last + 1])))
        out.sort()
        return out

    def _trim(self, words: list[str], first: int, last: int, entry: Entry) -> tuple[int, Entry]:
        """Head-word style: drop leading severity/course/location modifiers ("severe abdominal
        pain" → "pain") while the rest is still a term with the same label."""
        while first < last:
            kind = self.modifiers.get(words[first])
            if kind is None or (kind == "location" and entry.label != "SYMPTOM"):
                break
            rest = " ".join(words[first + 1 : last + 1])
            sub = self.lookup(rest)
            if sub is None or sub.label != entry.label or sub.case is not None:
                break
            first, entry = first + 1, sub
        return first, entry
