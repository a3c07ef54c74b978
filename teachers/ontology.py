"""The dictionary teacher: ontology lexicons matched over notes, offline, free and fast.

``OntologyTeacher("open")`` labels with the vendored openly licensed lexicons (DOID, SYMP, HPO,
DrugBank, Drugs@FDA, and the project's curated clinical vocabulary); "rxnorm" and "snomed" add
the user's own licensed releases. Spans carry the concept id of the term that matched.
"""
from __future__ import annotations

import os
import time
from typing import Any, Iterable, Iterator

from distill.documents import Document, Span
from ontologies.abbreviations import expand
from ontologies.lexicon import load_matcher, sources_for
from teachers.base import Usage, parse_flag

DEFAULT_CONFIG = "open"


class OntologyTeacher:
    """A named annotator (skweak-style) over one lexicon configuration."""

    def __init__(self, config: str = DEFAULT_CONFIG, rxnorm: str | os.PathLike | None = None,
                 snomed: str | os.PathLike | None = None, cache: bool = True):
        self.config = config or DEFAULT_CONFIG
        self.name = f"ontology:{self.config}"
        self.usage = Usage()
        self.matcher, self.lexicon_info = load_matcher(sources_for(self.config, rxnorm=rxnorm, snomed=snomed), cache=cache)

    def label_text(self, text: str) -> list[Span]:
        """Lexicon matches plus the abbreviations the note defines for them."""
        return [
            Span(m.start, m.end, m.label, text[m.start : m.end], self.name, concept=m.concept,
                 attributes={"lexicon": m.source})
            for m in expand(text, self.matcher.find(text))
        ]

    def label(self, docs: Iterable[Document]) -> Iterator[list[Span]]:
        for doc in docs:
            t0 = time.perf_counter()
            spans = self.label_text(doc.text)
            self.usage.seconds += time.perf_counter() - t0
            self.usage.documents += 1
            yield spans


def from_spec(name: str, **options: Any) -> OntologyTeacher:
    """``ontology:<config>`` → teacher; options ``rxnorm=PATH``, ``snomed=PATH``, ``cache=false``."""
    cache = parse_flag(options.pop("cache", True), "cache")
    rxnorm, snomed = options.pop("rxnorm", None), options.pop("snomed", None)
    if options:
        raise ValueError(f"unknown option(s) for the ontology teacher: {', '.join(sorted(options))} (known: rxnorm, snomed, cache)")
    return OntologyTeacher(name or DEFAULT_CONFIG, rxnorm=rxnorm, snomed=snomed, cache=cache)
