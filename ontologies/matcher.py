"""Dictionary matching on pyahocorasick: whole words only, longest match wins, no overlaps.

Text and terms go through the same length-preserving fold (lower case; punctuation and dashes
become spaces; a regular plural "-s"/"-ies"/"-sses" is folded to the singular and British
"oe"/"ae"/"-our" to American, a CRLF line break to one space, each padded with a ``PAD``
character), so folded offsets are note offsets. The automaton runs over the fold with the pads
removed and a vectorised position map takes matches back to note offsets (the ≥ 5 MB/s target):
"renal cysts", "oesophageal varices", "diabetes<CRLF>mellitus" and "Non-small-cell" find
"renal cyst", "esophageal varices", "diabetes mellitus" and "non small cell" without storing
variant keys.
"""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import ahocorasick
import numpy as np

# Fills the place of folded-away characters (the fold keeps the note's length) and is removed
# before matching, so a folded word inside a multi-word term leaves no gap.
PAD = "\x00"
# Plural and British-spelling folds. Each replacement has the same length as what it replaces
# (padding goes to the word's end), so offsets in the folded text are offsets in the note; and
# each pattern starts with a literal, which keeps ``re`` fast on megabytes of text.
_FOLDS = (
    (re.compile(r"ies\b(?<=\w\wies)"), "y" + PAD * 2),  # ovaries -> ovary
    (re.compile(r"sses\b(?<=\wsses)"), "ss" + PAD * 2),  # abscesses -> abscess
    (re.compile(r"s\b(?<=\w\w[^\Wsiu]s)"), PAD),  # cysts -> cyst (not: psoriasis, status, abscess)
    (re.compile(r"our\b(?<=\w\w\wour)"), "or" + PAD),  # tumour -> tumor
)
_DIGRAPH = re.compile(r"[ao]e\w*")  # oedema -> edema, anaemia -> anemia
# Everything but letters, digits and a possessive 's becomes a space: punctuation and dashes
# are word boundaries, and "pain. Fever" cannot match "pain fever" (two spaces apart).
_NON_WORD = re.compile(r"[^\w '\x00]")
_ASCII_NON_WORD = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) in " '_" + PAD)})
_NON_POSSESSIVE = re.compile(r"'(?!s\b)")
# Lexicon label of terms that claim their words but produce no span (lab analytes and the like).
IGNORE = "IGNORE"


def _american(m: re.Match) -> str:
    w = m.group()
    f = w.replace("ae", "e").replace("oe", "e")
    return f + PAD * (len(w) - len(f))


def fold(text: str) -> str:
    """Lower-case ``text`` and fold it for matching, keeping its length (offsets stay valid)."""
    low = text.lower()
    if len(low) != len(text):  # a few characters grow when lower-cased (e.g. "İ")
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    if PAD in low:  # a NUL in the note itself is a separator, not padding
        low = low.replace(PAD, " ")
    if "’" in low:
        low = low.replace("’", "'")
    if "\r\n" in low:  # one line break, as "\n" is: a term split across lines still matches
        low = low.replace("\r\n", " " + PAD)
    for pattern, repl in _FOLDS:
        low = pattern.sub(repl, low)
    if "ae" in low or "oe" in low:
        low = _DIGRAPH.sub(_american, low)
    low = low.translate(_ASCII_NON_WORD) if low.isascii() else _NON_WORD.sub(" ", low)
    return _NON_POSSESSIVE.sub(" ", low) if "'" in low else low


def _in_capitals(text: str, start: int, end: int) -> bool:
    """True when the words around ``text[start:end]`` are upper case too (a heading such as
    "DIAGNOSIS: FEVER"), so an upper-case word there is the word, not an abbreviation."""
    around = text[max(0, start - 30) : start] + text[end : end + 30]
    letters = [c for c in around if c.isalpha()]
    return bool(letters) and sum(c.isupper() for c in letters) > 0.8 * len(letters)


def normalize(term: str) -> str:
    """The matching key of a term: the fold of its single-spaced text without its pads, so a
    key is exactly what the matcher sees of the same words in a note ("diabetes mellitus" →
    "diabete mellitus")."""
    return fold(" ".join(term.split())).replace(PAD, "").strip()


def _unpad(folded: str) -> str:
    return folded.replace(PAD, "") if PAD in folded else folded


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

    Keys are stored as ``" " + key + " "`` and the folded note is padded with spaces, so the
    automaton itself reports whole-word occurrences only (nested ones included). Values are
    plain ints (``entry index << 9 | case-sensitive << 8 | key length``) rather than Python
    objects, so a saved automaton loads without unpickling 75k objects (the ≤ 2 s load target).
    """

    MAX_KEY = 254

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
            if not key or len(key) + 2 > cls.MAX_KEY:
                continue
            idx = index.setdefault(entry, len(entries))
            if idx == len(entries):
                entries.append(entry)
            auto.add_word(f" {key} ", idx << 9 | (entry.case is not None) << 8 | (len(key) + 2))
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
        return None if hit is None else self.entries[hit >> 9]

    def find(self, text: str) -> list[Match]:
        """Non-overlapping whole-word matches in text order; longer matches win, then leftmost."""
        if not text or not len(self.automaton):
            return []
        folded = " " + fold(text) + " "  # folded[i + 1] is text[i]
        entries, n = self.entries, len(text)
        found = []
        append = found.append
        if PAD in folded:  # match without the pads, then map the hits back in one vectorised step
            raw = np.array(list(self.automaton.iter(_unpad(folded))), np.int64).reshape(-1, 2)
            pos = np.flatnonzero(np.frombuffer(folded.encode("utf-32-le"), np.uint32) != 0)  # unpadded k -> folded
            last, val = raw[:, 0], raw[:, 1]
            hits = zip((pos[last - (val & 255) + 2] - 1).tolist(), pos[last - 1].tolist(), val.tolist())
        else:
            hits = ((last - (v & 255) + 1, last - 1, v) for last, v in self.automaton.iter(folded))
        for start, end, value in hits:  # the hot loop: keep it lean; start/end are text offsets
            if end < n and text[end].isalnum():  # a folded plural: "cyst" of "cysts"
                while end < n and text[end].isalnum():
                    end += 1
            if value & 256:  # case-sensitive entry; an acronym's plural ("NSAIDs", "DVTs") counts
                surface, case = " ".join(text[start:end].split()), entries[value >> 9].case
                if surface != case and not (surface[-1:] == "s" and surface[:-1] == case):
                    continue
            elif end - start <= 5 and text[start:end].isupper() and not _in_capitals(text, start, end):
                continue  # "PICA", "TPN": an abbreviation of something else, not the word
            append((start - end, start, end, value >> 9))
        found.sort()  # longest first, then leftmost
        taken = bytearray(n)
        out = []
        for _neg, s, e, idx in found:
            entry = entries[idx]
            if taken.find(1, s, e) != -1:
                continue
            taken[s:e] = b"\x01" * (e - s)
            if entry.label == IGNORE:
                continue
            for s, e, entry in self._split_coordination(folded, s, e, entry):
                if self.modifiers and " " in folded[s + 1 : e + 1].strip():
                    s, entry = self._trim(folded, s, e, entry)
                out.append(Match(s, e, entry.label, entry.concept, entry.source, _unpad(folded[s + 1 : e + 1]).strip()))
        out.sort()
        return out

    def _split_coordination(self, folded: str, s: int, e: int, entry: Entry) -> list[tuple[int, int, Entry]]:
        """"nausea and vomiting" → "nausea", "vomiting" when both halves are terms of the same
        label: annotation guidelines tag each finding, and each half has its own concept."""
        span = folded[s + 1 : e + 1]
        for conj in (" and ", " or "):
            i = span.find(conj)
            if i <= 0:
                continue
            left, right = _unpad(span[:i]).strip(), _unpad(span[i + len(conj) :]).strip()
            a, b = self.lookup(left), self.lookup(right)
            if a and b and a.label == b.label == entry.label and a.case is None and b.case is None:
                rs = s + i + len(conj)
                while folded[rs + 1] in (" ", PAD):
                    rs += 1
                return [(s, s + len(span[:i].rstrip()), a), (rs, e, b)]
        return [(s, e, entry)]

    def _trim(self, folded: str, s: int, e: int, entry: Entry) -> tuple[int, Entry]:
        """Head-word style: drop leading severity/course/location modifiers ("severe abdominal
        pain" → "pain") while the rest is still a term with the same label."""
        while True:
            first, sep, rest = folded[s + 1 : e + 1].strip().partition(" ")
            kind = self.modifiers.get(_unpad(first))
            if not sep or kind is None or (kind == "location" and entry.label != "SYMPTOM"):
                return s, entry
            sub = self.lookup(_unpad(rest).strip())
            if sub is None or sub.label != entry.label or sub.case is not None:
                return s, entry
            s += len(first)
            while folded[s + 1] in (" ", PAD):
                s += 1
            entry = sub
