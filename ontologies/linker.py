"""Concept linking: a span a model found → the ontology concept of its lexicon term.

The dictionary teacher knows a span's concept because it matched a lexicon key; a student finds
spans the lexicon spells differently ("lung cancers", "Crohns disease", typos). The linker looks
the span up by the matcher's own fold (plurals, British spellings, punctuation), then without
leading modifier words ("severe chest pain" → "chest pain"), then under any label (student and
lexicon may disagree on DISEASE vs SYMPTOM: the exact term is still the best evidence), then by
fuzzy string similarity (rapidfuzz's normalised Indel ratio) among the keys of the span's label,
so the deployed model outputs the same ``concept`` ids as the teacher.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rapidfuzz import fuzz, process

from distill.documents import Span
from ontologies.matcher import IGNORE, Entry, Matcher, normalize

DEFAULT_CUTOFF = 95.0  # fuzzy score (0-100) below which a span stays unlinked (chosen on NCBI-disease dev)


class LinkError(ValueError):
    """A concept id that the lexicon does not hold, or a bad option."""


@dataclass(frozen=True)
class Link:
    concept: str
    key: str  # the lexicon key it was linked to
    score: float  # 100 for an exact key, else the fuzzy similarity
    method: str  # exact (any label when the span's own has no such key) | head | fuzzy


class Linker:
    """Link spans to the concepts of one compiled lexicon (a ``Matcher``)."""

    def __init__(self, matcher: Matcher, cutoff: float = DEFAULT_CUTOFF):
        if not 0 < cutoff <= 100:
            raise LinkError(f"cutoff must be in (0, 100], got {cutoff}")
        self.matcher = matcher
        self.cutoff = cutoff
        self._keys: dict[str, list[str]] = {}
        self._concepts: dict[str, Entry] = {}
        for raw, value in matcher.automaton.items():
            entry = matcher.entries[value >> 9]
            if entry.label == IGNORE:
                continue
            self._keys.setdefault(entry.label, []).append(raw.strip())
            self._concepts.setdefault(entry.concept, entry)
        self._cache: dict[tuple[str, str], Link | None] = {}

    @classmethod
    def from_config(cls, config: str = "open", cutoff: float = DEFAULT_CUTOFF, **paths: str) -> "Linker":
        """The linker of a lexicon configuration (``open``, ``open+rxnorm`` ...), from the cache."""
        from ontologies.lexicon import load_matcher, sources_for

        return cls(load_matcher(sources_for(config, **paths))[0], cutoff)

    def entry(self, concept: str) -> Entry:
        """The lexicon entry of a concept id; an id the lexicon lacks is a LinkError."""
        try:
            return self._concepts[concept]
        except KeyError:
            raise LinkError(f"concept {concept!r} is not in the lexicon ({len(self._concepts)} concepts from "
                            f"{', '.join(sorted({e.source for e in self._concepts.values()}))})") from None

    def link(self, text: str, label: str) -> Link | None:
        """The best concept for a mention of ``label``, or None when nothing is close enough."""
        key = normalize(text)
        if not key:
            return None
        hit = self._cache.get((key, label), ...)
        if hit is ...:
            hit = self._cache[(key, label)] = self._link(key, label)
        return hit

    def _exact(self, key: str, label: str) -> Entry | None:
        entry = self.matcher.lookup(key)
        return entry if entry is not None and entry.label == label else None

    def _link(self, key: str, label: str) -> Link | None:
        entry = self._exact(key, label)
        if entry is not None:
            return Link(entry.concept, key, 100.0, "exact")
        words = key.split()
        while len(words) > 1 and words[0] in self.matcher.modifiers:
            words = words[1:]
            entry = self._exact(" ".join(words), label)
            if entry is not None:
                return Link(entry.concept, " ".join(words), 100.0, "head")
        entry = self.matcher.lookup(key)  # the lexicon files the term under another label
        if entry is not None and entry.label != IGNORE:
            return Link(entry.concept, key, 100.0, "exact")
        choices = self._keys.get(label)
        if not choices:
            return None
        best = process.extractOne(key, choices, scorer=fuzz.ratio, score_cutoff=self.cutoff)
        if best is None:
            return None
        found = self.matcher.lookup(best[0])
        assert found is not None  # every choice is a key of the automaton
        return Link(found.concept, best[0], float(best[1]), "fuzzy")

    def link_spans(self, spans: Sequence[Span]) -> list[Span]:
        """``spans`` with ``concept`` set where a concept is close enough (others keep None).

        A span that already carries a concept keeps it, once the lexicon confirms the id exists.
        """
        out = []
        for s in spans:
            if s.concept is not None:
                self.entry(s.concept)
                out.append(s)
                continue
            hit = self.link(s.text, s.label)
            out.append(s if hit is None else s.with_concept(hit.concept))
        return out
