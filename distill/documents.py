"""Plain data objects: documents, spans and span layers.

Offsets are Python character offsets into ``Document.text`` (end exclusive). The invariant
``text[start:end] == span.text`` is checked whenever a span is attached to a document, so a
reader that mis-counts offsets (CRLF, BOMs, title+abstract joins) fails loudly at the source
instead of silently corrupting labels downstream.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator, Mapping, Sequence

MEDICATION = "MEDICATION"
DISEASE = "DISEASE"
SYMPTOM = "SYMPTOM"
DEFAULT_LABELS: tuple[str, ...] = (MEDICATION, DISEASE, SYMPTOM)

GOLD = "gold"
SILVER = "silver"

#: Assertion status of a mention (ConText's categories folded into one value): the patient has it,
#: it is negated, uncertain, conditional/future, in the past, or experienced by a relative.
ASSERTIONS: tuple[str, ...] = ("present", "absent", "possible", "hypothetical", "historical", "family")


class SpanError(ValueError):
    """A span does not fit its document (offsets out of range, or text mismatch)."""


@dataclass(frozen=True)
class Span:
    """One labelled mention.

    ``fragments`` holds the pieces of a discontinuous mention (brat ``0 5;9 14``); then
    ``start``/``end`` are the bounding extent and ``text`` is the fragments joined by a space
    (brat's own convention). ``attributes`` carries extras such as ``{"negated": True}``.
    ``assertion`` is one of ``ASSERTIONS`` (or None: not assessed). Equality and hashing use
    offsets, label and source only.
    """

    start: int
    end: int
    label: str
    text: str
    source: str = ""
    score: float | None = field(default=None, compare=False)
    concept: str | None = field(default=None, compare=False)
    fragments: tuple[tuple[int, int], ...] | None = field(default=None, compare=False)
    attributes: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    assertion: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.start, int) or not isinstance(self.end, int):
            raise SpanError(f"span offsets must be integers, got {self.start!r}, {self.end!r}")
        if self.start < 0 or self.end <= self.start:
            raise SpanError(f"invalid span offsets [{self.start}, {self.end}) for {self.text!r}")
        if not self.label:
            raise SpanError(f"span [{self.start}, {self.end}) has an empty label")
        if self.assertion is not None and self.assertion not in ASSERTIONS:
            raise SpanError(f"span [{self.start}, {self.end}) {self.text!r}: unknown assertion {self.assertion!r} "
                            f"(known: {', '.join(ASSERTIONS)})")

    @property
    def negated(self) -> bool:
        return bool(self.attributes.get("negated", False))

    def with_source(self, source: str) -> "Span":
        return replace(self, source=source)

    def with_label(self, label: str) -> "Span":
        return replace(self, label=label)

    def with_assertion(self, assertion: str | None) -> "Span":
        return replace(self, assertion=assertion)

    def with_concept(self, concept: str | None) -> "Span":
        return replace(self, concept=concept)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start": self.start, "end": self.end, "label": self.label, "text": self.text}
        if self.source:
            out["source"] = self.source
        if self.score is not None:
            out["score"] = self.score
        if self.concept is not None:
            out["concept"] = self.concept
        if self.assertion is not None:
            out["assertion"] = self.assertion
        if self.fragments:
            out["fragments"] = [list(f) for f in self.fragments]
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "") -> "Span":
        try:
            frags = d.get("fragments")
            return cls(
                start=d["start"],
                end=d["end"],
                label=d["label"],
                text=d["text"],
                source=d.get("source", source) or source,
                score=d.get("score"),
                concept=d.get("concept"),
                fragments=tuple((int(a), int(b)) for a, b in frags) if frags else None,
                attributes=dict(d.get("attributes") or {}),
                assertion=d.get("assertion"),
            )
        except KeyError as e:
            raise SpanError(f"span is missing the field {e.args[0]!r}: {dict(d)!r}") from None


def check_span(text: str, span: Span, doc_id: str = "?") -> None:
    """Raise SpanError unless ``span`` lies inside ``text`` and its text matches."""
    if span.end > len(text):
        raise SpanError(
            f"document {doc_id!r}: span [{span.start}, {span.end}) {span.text!r} is out of range "
            f"(text has {len(text)} characters)"
        )
    if span.fragments:
        pieces = []
        for a, b in span.fragments:
            if not (span.start <= a < b <= span.end):
                raise SpanError(f"document {doc_id!r}: fragment [{a}, {b}) outside span [{span.start}, {span.end})")
            pieces.append(text[a:b])
        actual = " ".join(pieces)
    else:
        actual = text[span.start : span.end]
    if actual != span.text:
        raise SpanError(
            f"document {doc_id!r}: span [{span.start}, {span.end}) says {span.text!r} "
            f"but the text there is {actual!r}"
        )


@dataclass
class Document:
    """A note plus any number of named span layers (``gold``, one per teacher, ``silver``).

    Layers follow skweak: every labelling source keeps its own list; aggregation writes a
    new layer instead of editing the others.
    """

    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, list[Span]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"document id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.text, str):
            raise ValueError(f"document {self.id!r}: text must be a string")
        layers, self.layers = self.layers, {}
        for name, spans in layers.items():
            self.set_layer(name, spans)

    def set_layer(self, name: str, spans: Iterable[Span]) -> list[Span]:
        """Attach ``spans`` as layer ``name`` (replacing it), checking every offset; sorted."""
        checked = []
        for s in spans:
            check_span(self.text, s, self.id)
            checked.append(s if s.source else s.with_source(name))
        checked.sort(key=lambda s: (s.start, s.end, s.label))
        self.layers[name] = checked
        return checked

    def spans(self, layer: str = GOLD) -> list[Span]:
        """The spans of one layer; a missing layer is an error, not an empty list."""
        try:
            return self.layers[layer]
        except KeyError:
            raise KeyError(f"document {self.id!r} has no layer {layer!r} (has {sorted(self.layers)})") from None

    def span(self, start: int, end: int, label: str, source: str = "", **kw: Any) -> Span:
        """Make a span from offsets, taking its text from the document."""
        return Span(start, end, label, self.text[start:end], source, **kw)

    def with_layers(self, **layers: Sequence[Span]) -> "Document":
        """A copy sharing text and meta, with extra or replaced layers."""
        doc = Document(self.id, self.text, dict(self.meta), dict(self.layers))
        for name, spans in layers.items():
            doc.set_layer(name, spans)
        return doc


def label_counts(docs: Iterable[Document], layer: str = GOLD) -> dict[str, int]:
    """How many spans of each label a layer holds across ``docs``."""
    counts: dict[str, int] = {}
    for doc in docs:
        for s in doc.layers.get(layer, ()):
            counts[s.label] = counts.get(s.label, 0) + 1
    return counts


def iter_spans(docs: Iterable[Document], layer: str) -> Iterator[tuple[Document, Span]]:
    for doc in docs:
        for s in doc.layers.get(layer, ()):
            yield doc, s
