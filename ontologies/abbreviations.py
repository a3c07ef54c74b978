"""Document-level abbreviations: "squamous cell carcinoma (SCC) ... the SCC recurred".

Case reports define an abbreviation once, in parentheses after the long form, then use it. A
dictionary cannot know "SCC" (it means many things), but the note itself says what it means
here. Following Schwartz & Hearst (2003), a parenthesised short form is accepted when its
letters occur in order in the words just before it, the first one starting a word; every later
whole-word, same-case use in the note then gets the long form's label and concept.
"""
from __future__ import annotations

import re
from typing import Sequence

from ontologies.matcher import Match

_TWO_WORDS_BEFORE = re.compile(r"(?:[\w-]+\s+){1,2}$")
_DEFINITION = re.compile(r"\s*[(\[]\s*([A-Za-z][A-Za-z0-9\-/.]{0,9})\s*[)\]]")


def _letters_in_order(short: str, long: str) -> bool:
    """Schwartz–Hearst: short-form characters found right to left in the long form, the first
    one at a word start."""
    s = [c for c in short.lower() if c.isalnum()]
    lf = long.lower()
    i = len(lf) - 1
    for k in range(len(s) - 1, -1, -1):
        c = s[k]
        while i >= 0 and (lf[i] != c or (k == 0 and i > 0 and lf[i - 1].isalnum())):
            i -= 1
        if i < 0:
            return False
        i -= 1
    return True


def expand(text: str, matches: Sequence[Match]) -> list[Match]:
    """``matches`` plus the parenthesised definitions they head and every later use of them."""
    defined: dict[str, Match] = {}
    for m in matches:
        d = _DEFINITION.match(text, m.end)
        if not d:
            continue
        short = d.group(1).rstrip(".")
        if len(short) < 2 or not any(c.isupper() for c in short):
            continue
        # the long form may begin up to two words before the matched term ("acute kidney injury
        # (AKI)" where the head-word rule kept "kidney injury"), not further
        before = _TWO_WORDS_BEFORE.search(text, max(0, m.start - 60), m.start)
        window = text[before.start() if before else m.start : m.end]
        if _letters_in_order(short, window) and short not in defined:
            defined[short] = m
    if not defined:
        return list(matches)
    taken = bytearray(len(text))
    for m in matches:
        taken[m.start : m.end] = b"\x01" * (m.end - m.start)
    out = list(matches)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(s) for s in sorted(defined, key=len, reverse=True)) + r")(?![\w-])")
    for hit in pattern.finditer(text):
        s, e = hit.span()
        if taken.find(1, s, e) != -1:
            continue
        src = defined[hit.group(1)]
        if s < src.start:  # used before it was defined: not ours to guess
            continue
        taken[s:e] = b"\x01" * (e - s)
        out.append(Match(s, e, src.label, src.concept, src.source, hit.group(1)))
    out.sort()
    return out
