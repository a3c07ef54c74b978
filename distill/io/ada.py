"""Ada Health case-report corpus, as the JSON list converted from its BioC pickle.

Each record is ``{id, infons, text, entities: [{id, type, spans: [[start, end]], text, origin}],
relations: [...]}`` with offsets relative to ``text``. The record id is the article URL; it is
kept as the document id (stable and unique, so hash splits do not depend on file order).
``modifier`` and ``factor`` entities and the relations are counted, not used: the modifiers
mix negation ("no") with normality ("normal"), so they are no reliable negation flag.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Callable, Any, Iterator, Mapping

from distill.documents import GOLD, Document, Span
from distill.io.jsonl import FormatError
from distill.io.report import ReadReport, check_mismatch_policy



def _load(path: Path) -> Any:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        try:
            return json.load(fh)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None


def read_ada(
    path: str | os.PathLike,
    label_map: Mapping[str, str] | None = None,
    layer: str = GOLD,
    *,
    on_mismatch: str = "raise",
    report: ReadReport | None = None,
    select: Callable[[str], bool] | None = None,
) -> Iterator[Document]:
    """Stream Documents from the Ada JSON (``.json`` or ``.json.gz``); types outside
    ``label_map`` are dropped and counted, mismatching spans raise or (``on_mismatch="report"``)
    are counted and left out. Errors name the file and the record index (the file is one JSON list).
    ``select(doc_id)`` skips documents before they are parsed or counted (splits)."""
    check_mismatch_policy(on_mismatch)
    path = Path(path)
    report = report if report is not None else ReadReport(source=str(path))
    if not report.source:
        report.source = str(path)
    data = _load(path)
    if not isinstance(data, list):
        raise FormatError(f"{path}: expected a JSON list of case reports, got {type(data).__name__}")
    seen: set[str] = set()
    for i, rec in enumerate(data):
        where = f"{path}[record {i}]"
        try:
            doc_id, text, entities = str(rec["id"]), rec["text"], rec["entities"]
        except (KeyError, TypeError) as e:
            raise FormatError(f"{where}: a case report needs 'id', 'text' and 'entities' ({e})") from None
        if doc_id in seen:
            raise FormatError(f"{where}: duplicate document id {doc_id!r}")
        seen.add(doc_id)
        if select is not None and not select(doc_id):
            continue
        report.skipped_lines.update(f"relation ({r.get('infons', {}).get('type', '?')})" for r in rec.get("relations", []))
        spans: list[Span] = []
        for ent in entities:
            try:
                typ, frags, surface = ent["type"], [(int(a), int(b)) for a, b in ent["spans"]], ent["text"]
            except (KeyError, TypeError, ValueError) as e:
                raise FormatError(f"{where}: entity {ent.get('id', '?') if isinstance(ent, dict) else ent!r} is malformed ({e})") from None
            label = typ if label_map is None else label_map.get(typ)
            if label is None:
                report.dropped_types[typ] += 1
                continue
            ewhere = f"{where} entity {ent.get('id', '?')}"
            if not frags or any(b <= a for a, b in frags):
                raise FormatError(f"{ewhere}: empty or reversed offsets {frags}")
            frags.sort()
            start, end = frags[0][0], max(b for _, b in frags)
            if end > len(text):
                msg = f"{ewhere}: offsets {start}-{end} out of range (text has {len(text)} characters)"
                if on_mismatch == "raise":
                    raise FormatError(msg)
                report.problem("offsets out of range", msg)
                continue
            actual = " ".join(text[a:b] for a, b in frags)
            if actual != surface:
                msg = f"{ewhere}: {typ} {start}-{end} says {surface!r} but the text there is {actual!r}"
                if on_mismatch == "raise":
                    raise FormatError(msg + " (on_mismatch='report' keeps going and counts these)")
                report.problem("span text mismatch", msg)
                continue
            spans.append(Span(start, end, label, actual, layer, fragments=tuple(frags) if len(frags) > 1 else None))
            report.kept[label] += 1
        report.documents += 1
        yield Document(doc_id, text, {"url": doc_id, **({"infons": rec["infons"]} if rec.get("infons") else {})}, {layer: spans})
