"""Documents <-> ``datasets.Dataset``, losslessly, so the HF ecosystem (map, filter, push to a
private hub, Arrow caching) works on our corpora without a second data model.

One row per document: ``id``, ``text``, ``meta`` (a JSON string: meta dicts differ between
documents and Arrow needs one schema), and one column per span layer holding a list of span
fields in the classic HF NER shape, a dict of parallel lists (``start``, ``end``, ``label``,
``text``, ``source``, ``score``, ``concept``, ``fragments``, ``attributes`` as JSON), which
reads the same on datasets 2.x and 4.x+. Token/BIO features are the student's business
(students.tagging), not this module's.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterable, Sequence

from distill.documents import GOLD, Document, Span

if TYPE_CHECKING:
    import datasets

BASE_COLUMNS = ("id", "text", "meta")
SPAN_FIELDS = ("start", "end", "label", "text", "source", "score", "concept", "fragments", "attributes")


def span_features() -> "datasets.Sequence":
    from datasets import Sequence as Seq, Value

    return Seq(
        {
            "start": Value("int64"),
            "end": Value("int64"),
            "label": Value("string"),
            "text": Value("string"),
            "source": Value("string"),
            "score": Value("float64"),
            "concept": Value("string"),
            "fragments": Seq(Seq(Value("int64"))),
            "attributes": Value("string"),
        }
    )


def _span_row(s: Span) -> dict:
    return {
        "start": s.start,
        "end": s.end,
        "label": s.label,
        "text": s.text,
        "source": s.source,
        "score": s.score,
        "concept": s.concept,
        "fragments": [list(f) for f in s.fragments] if s.fragments else [],
        "attributes": json.dumps(dict(s.attributes), ensure_ascii=False, sort_keys=True),
    }


def to_dataset(docs: Iterable[Document], layer: str | Sequence[str] | None = GOLD) -> "datasets.Dataset":
    """A Dataset with one row per document and one span-list column per requested layer.

    Every document must have every requested layer (a missing one raises KeyError, it is not
    written as empty); ``layer=None`` writes the notes only.
    """
    from datasets import Dataset, Features, Value

    layers = [] if layer is None else [layer] if isinstance(layer, str) else list(layer)
    clash = [n for n in layers if n in BASE_COLUMNS]
    if clash:
        raise ValueError(f"layer name(s) {clash} clash with the columns {BASE_COLUMNS}")
    rows: dict[str, list] = {c: [] for c in (*BASE_COLUMNS, *layers)}
    for doc in docs:
        rows["id"].append(doc.id)
        rows["text"].append(doc.text)
        rows["meta"].append(json.dumps(doc.meta, ensure_ascii=False, sort_keys=True))
        for name in layers:
            spans = [_span_row(s) for s in doc.spans(name)]
            rows[name].append({k: [r[k] for r in spans] for k in SPAN_FIELDS})
    features = Features({"id": Value("string"), "text": Value("string"), "meta": Value("string"),
                         **{name: span_features() for name in layers}})
    return Dataset.from_dict(rows, features=features)


def _spans_from_column(col: dict | list, layer: str) -> list[Span]:
    """A Sequence-of-struct column comes back as a dict of lists; accept a list of dicts too."""
    if isinstance(col, dict):
        n = len(col["start"])
        items = [{k: col[k][i] for k in col} for i in range(n)]
    else:
        items = list(col)
    out = []
    for d in items:
        frags = d.get("fragments") or None
        attrs = d.get("attributes") or "{}"
        out.append(
            Span(
                int(d["start"]),
                int(d["end"]),
                d["label"],
                d["text"],
                d.get("source") or layer,
                score=d.get("score"),
                concept=d.get("concept"),
                fragments=tuple((int(a), int(b)) for a, b in frags) if frags else None,
                attributes=json.loads(attrs) if isinstance(attrs, str) else dict(attrs),
            )
        )
    return out


def from_dataset(ds: "datasets.Dataset", layers: Sequence[str] | None = None) -> list[Document]:
    """Documents from a Dataset written by :func:`to_dataset` (or any with ``id``/``text`` and
    span-list columns). ``layers=None`` reads every column other than id/text/meta as a layer.
    Offsets are re-checked against the text on the way in."""
    missing = [c for c in ("id", "text") if c not in ds.column_names]
    if missing:
        raise ValueError(f"dataset lacks the column(s) {missing}; has {ds.column_names}")
    names = [c for c in ds.column_names if c not in BASE_COLUMNS] if layers is None else list(layers)
    absent = [n for n in names if n not in ds.column_names]
    if absent:
        raise ValueError(f"dataset has no layer column(s) {absent}; has {ds.column_names}")
    docs = []
    for row in ds:
        meta = row.get("meta")
        meta = json.loads(meta) if isinstance(meta, str) and meta else dict(meta or {})
        docs.append(Document(str(row["id"]), row["text"], meta, {n: _spans_from_column(row[n], n) for n in names}))
    return docs
