"""Assertion status of mentions by ConText rules: present, absent, possible, hypothetical,
historical or family.

An implementation of the published trigger-and-scope algorithm rather than a library, because
the deployed runtime must stay free of spaCy and torch: NegEx (Chapman et al. 2001, the
trigger list of negex.python) for negation and ConText (Harkema et al. 2009, the pyConText
lexical knowledge base) for uncertainty, hypothetical, historical and other-experiencer
triggers. A trigger governs the mentions after it (``forward``), before it (``backward``) or
both, inside its sentence, until a termination term ("but", "however", "which" ...) or
``window`` words; pseudo-triggers ("no increase", "gram negative") consume their words so
that the trigger inside them does not fire. Rules apply to any span (teacher, student or
gold), so the status does not depend on which model found the mention.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from distill.documents import ASSERTIONS, Span

FORWARD, BACKWARD, BOTH = "forward", "backward", "both"
PSEUDO, TERMINATE = "pseudo", "terminate"

# category -> direction -> phrases. Lower case; "\s+" between words is implied.
TRIGGERS: dict[str, dict[str, tuple[str, ...]]] = {
    "absent": {
        FORWARD: (
            "no", "not", "denies", "denied", "deny", "denying", "without", "absence of", "absent",
            "no evidence of", "no evidence for", "no evidence", "negative for", "free of", "no signs of",
            "no sign of", "no symptoms of", "no history of", "never had", "never developed", "rules out",
            "ruled out", "ruling out", "rule him out", "rule her out", "resolution of", "fails to reveal",
            "failed to reveal", "not demonstrate", "did not demonstrate", "did not reveal", "did not show",
            "didn't show", "not show", "not reveal", "no suggestion of", "no findings of", "no new",
            "no complaints of", "no further", "nor", "neither", "unremarkable for",
            "with no", "was not", "were not", "did not have", "does not have", "no clinical", "lack of",
            "lacked", "lacks", "discontinued", "discontinuing", "stopped", "withdrawal of", "ceased",
            "not consistent with", "no abnormal", "no obvious", "no significant", "no other",
        ),
        BACKWARD: (
            "was ruled out", "is ruled out", "are ruled out", "were ruled out", "have been ruled out",
            "has been ruled out", "was excluded", "were excluded", "negative", "unlikely", "absent", "was absent", "were absent",
            "not seen", "not observed", "not detected", "not found", "not identified", "not noted",
            "not present", "not evident", "not visualized", "not demonstrated", "was not", "were not",
            "free", "resolved", "not appreciated", "disappeared", "subsided", "was discontinued",
            "were discontinued", "was stopped", "was withdrawn",
        ),
    },
    "possible": {
        FORWARD: (
            "possible", "possibly", "probable", "probably", "questionable", "question of", "suspect",
            "suspected", "suspicious for", "suspicious of", "suspicion of", "suspicion for", "concern for",
            "concerning for", "rule out", "r/o", "may have", "might have", "could have", "may be",
            "could be", "might be", "differential diagnosis", "differential diagnoses", "ddx",
            "cannot exclude", "cannot rule out", "can not rule out", "can't rule out", "not excluded",
            "presumed", "presumptive", "suggestive of", "suggesting", "suggests", "likely", "uncertain",
            "doubt", "equivocal", "versus", "vs", "consider", "considered", "evaluate for", "evaluation for",
            "worrisome for",
        ),
        BACKWARD: (
            "cannot be excluded", "cannot be ruled out", "could not be excluded", "could not be ruled out",
            "can not be excluded", "not be ruled out", "was suspected", "were suspected", "is suspected",
            "was considered", "were considered", "is possible", "was possible", "is likely", "was likely",
            "is questionable", "was questioned", "?", "versus", "vs",
        ),
    },
    "hypothetical": {
        FORWARD: (
            "if", "in case of", "in case", "should he", "should she", "should there", "should the patient",
            "return if", "come back if", "return for", "as needed for", "prn", "watch for", "monitor for",
            "to prevent", "prevention of", "risk of", "risk for", "at risk of", "screening for", "screen for",
        ),
        BACKWARD: ("as needed", "if needed", "if necessary", "prophylaxis"),
    },
    "historical": {
        FORWARD: (
            "history of", "h/o", "hx of", "past history of", "past medical history", "pmh", "pmhx",
            "previous", "previously", "prior", "prior to", "in the past", "status post", "s/p",
            "history significant for", "remote", "formerly", "former", "childhood",
            "past surgical history", "psh", "medical history",
        ),
        BACKWARD: ("in the past", "years ago", "months ago", "as a child", "in childhood", "previously",
                   "in the remote past", "history"),
    },
    "family": {
        BOTH: (
            "family history", "family history of", "fhx", "fh", "family hx", "mother", "father", "parents",
            "parent", "sister", "brother", "sibling", "siblings", "aunt", "uncle", "grandmother",
            "grandfather", "grandparent", "grandparents", "cousin", "son", "daughter", "mother's",
            "father's", "maternal", "paternal", "relatives", "relative", "family member", "family members",
            "twin", "niece", "nephew",
        ),
    },
    PSEUDO: {
        BOTH: (
            "no increase", "no change", "no suspicious change", "no significant change", "no interval change",
            "no definite change", "not only", "not necessarily", "not certain if", "not certain whether",
            "without difficulty", "gram negative", "not cause", "not drain", "no longer", "not been",
            "not extend", "not rule out", "no further change", "without any further", "without further",
            "history and physical", "history and examination", "history taking", "social history",
            "if any", "not optimal", "vs.", "rather than", "known to be", "negative pressure",
            "triple negative", "negative predictive", "hiv negative", "not previously",
        ),
    },
    TERMINATE: {
        BOTH: (
            "but", "however", "although", "though", "except", "apart from", "aside from", "yet", "still",
            "which", "who", "whom", "nevertheless", "nonetheless", "cause of", "causes of", "source of",
            "sources of", "reason of", "reason for", "reasons for", "etiology of", "origin of",
            "etiology for", "origin for", "because", "unless", "other possibilities of", "secondary to",
            "presented with", "presents with", "presenting with", "complained of", "complains of",
            "admitted with", "now", "currently", "consistent with", "confirming", ";",
        ),
    },
}

#: which status wins when several triggers govern one mention (a negated family history is absent)
PRIORITY: tuple[str, ...] = ("absent", "family", "possible", "hypothetical", "historical")
DEFAULT_WINDOW = 6  # words between a trigger and its mention (NegEx used 5; 6 was best on MACCROBAT train)
_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z0-9(\[]|\s*$)|\n\s*\n|\n(?=\s*[-*•\dA-Z])|\r\n\s*\r\n")
_WORD = re.compile(r"\w+")


class AssertionRuleError(ValueError):
    """A span that does not fit its text, or a bad option."""


@dataclass(frozen=True)
class _Trigger:
    start: int
    end: int
    category: str
    direction: str


def _compile(triggers: dict[str, dict[str, tuple[str, ...]]]) -> tuple[re.Pattern[str], dict[str, tuple[str, str]]]:
    """One alternation, longest phrases first, so that a pseudo-trigger or a longer trigger
    ("no evidence of") consumes the shorter one inside it ("no")."""
    meaning: dict[str, tuple[str, str]] = {}
    for category, by_dir in triggers.items():
        for direction, phrases in by_dir.items():
            for p in phrases:
                key = " ".join(p.split())
                old = meaning.get(key)
                if old and old[0] == category and old[1] != direction:
                    meaning[key] = (category, BOTH)
                elif old is None or category in (PSEUDO, TERMINATE):
                    meaning[key] = (category, direction)
    parts = []
    for key in sorted(meaning, key=len, reverse=True):
        body = r"\s+".join(re.escape(w) for w in key.split())
        left = r"(?<![\w/'])" if key[0].isalnum() else ""
        right = r"(?![\w/'])" if key[-1].isalnum() else ""
        parts.append(left + body + right)
    return re.compile("|".join(parts), re.IGNORECASE), meaning


class ContextRules:
    """Assign an assertion status to spans of one text by ConText triggers and scopes."""

    def __init__(self, triggers: dict[str, dict[str, tuple[str, ...]]] = TRIGGERS, window: int = DEFAULT_WINDOW):
        if window < 1:
            raise AssertionRuleError(f"window must be at least 1 word, got {window}")
        unknown = set(triggers) - set(ASSERTIONS) - {PSEUDO, TERMINATE}
        if unknown or "present" in triggers:
            raise AssertionRuleError(f"unknown trigger categories {sorted(unknown | ({'present'} & set(triggers)))}: "
                                  f"use {', '.join(PRIORITY)}, {PSEUDO} or {TERMINATE}")
        self.window = window
        self._pattern, self._meaning = _compile(triggers)

    def _triggers(self, sentence: str, offset: int) -> list[_Trigger]:
        out = []
        for m in self._pattern.finditer(sentence):
            category, direction = self._meaning[" ".join(m.group().lower().split())]
            if category != PSEUDO:
                out.append(_Trigger(offset + m.start(), offset + m.end(), category, direction))
        return out

    def assert_spans(self, text: str, spans: Sequence[Span]) -> list[Span]:
        """``spans`` with ``assertion`` set (the order kept); spans must lie inside ``text``."""
        bounds = _sentences(text)
        cache: dict[int, list[_Trigger]] = {}
        out = []
        for span in spans:
            if span.end > len(text):
                raise AssertionRuleError(f"span [{span.start}, {span.end}) {span.text!r} is outside a text of "
                                      f"{len(text)} characters")
            i = _sentence_of(bounds, span.start)
            if i not in cache:
                cache[i] = self._triggers(text[bounds[i][0] : bounds[i][1]], bounds[i][0])
            out.append(span.with_assertion(self._status(text, span, cache[i], bounds[i][1])))
        return out

    def _status(self, text: str, span: Span, triggers: list[_Trigger], sentence_end: int) -> str:
        found: set[str] = set()
        before = [t for t in triggers if t.end <= span.start or span.start <= t.start and t.end < span.end]
        after = [t for t in triggers if t.start >= span.end and t.start < max(sentence_end, span.end)]
        for t in reversed(before):  # nearest first (one inside the span too: "no signs of X"); a terminator stops the rest
            if t.category == TERMINATE:
                break
            if t.direction != BACKWARD and _words_between(text, t.end, span.start) <= self.window:
                found.add(t.category)
        for t in after:
            if t.category == TERMINATE:
                break
            if t.direction != FORWARD and _words_between(text, span.end, t.start) <= self.window:
                found.add(t.category)
        return next((c for c in PRIORITY if c in found), "present")


def _sentences(text: str) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        bounds.append((start, m.end()))
        start = m.end()
    bounds.append((start, len(text)))
    return bounds


def _sentence_of(bounds: list[tuple[int, int]], pos: int) -> int:
    lo, hi = 0, len(bounds) - 1
    while lo < hi:  # the first sentence whose end is past pos
        mid = (lo + hi) // 2
        if bounds[mid][1] <= pos:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _words_between(text: str, a: int, b: int) -> int:
    return len(_WORD.findall(text, a, b)) if b > a else 0

