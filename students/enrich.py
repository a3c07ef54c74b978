"""What the deployed student adds to each span after finding it: an assertion status (ConText
rules) and an ontology concept (lexicon + fuzzy linking), as the dictionary teacher outputs.

Both steps are rules over the note text and the span, so they run after any predictor (torch,
ONNX, Ray) without touching it, and import no torch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

from distill.assertion import ContextRules
from distill.documents import Document
from ontologies.linker import Linker


@dataclass
class EnrichStats:
    spans: int = 0
    linked: int = 0
    assertions: dict[str, int] = field(default_factory=dict)


def enrich_documents(docs: Iterable[Document], layer: str, rules: ContextRules | None,
                     linker: Linker | None, stats: EnrichStats | None = None) -> list[Document]:
    """Copies of ``docs`` whose ``layer`` spans carry ``assertion`` (with ``rules``) and
    ``concept`` (with ``linker``); a step given None is skipped."""
    stats = stats if stats is not None else EnrichStats()
    out = []
    for doc in docs:
        spans = list(doc.layers.get(layer, ()))
        if rules is not None:
            spans = rules.assert_spans(doc.text, spans)
        if linker is not None:
            spans = linker.link_spans(spans)
        stats.spans += len(spans)
        stats.linked += sum(s.concept is not None for s in spans)
        for s in spans:
            if s.assertion is not None:
                stats.assertions[s.assertion] = stats.assertions.get(s.assertion, 0) + 1
        out.append(doc.with_layers(**{layer: spans}))
    return out


def enrich_file(path: str | os.PathLike, layer: str, assertion: bool = True, lexicon: str | None = "open") -> EnrichStats:
    """Rewrite a predictions JSONL (flat ``entities`` of ``layer``) with assertions and concepts;
    ``lexicon`` names the linking configuration (``open``, ``open+rxnorm`` ...) or None."""
    from distill.io.jsonl import read_jsonl, write_jsonl

    rules = ContextRules() if assertion else None
    linker = Linker.from_config(lexicon) if lexicon else None
    stats = EnrichStats()
    flat = (Document(d.id, d.text, d.meta, {layer: [s for spans in d.layers.values() for s in spans]})
            for d in read_jsonl(path, entities_layer=layer))  # a flat file is one list, whatever each span's source
    docs = enrich_documents(flat, layer, rules, linker, stats)
    write_jsonl(docs, path, flat=layer)
    return stats
