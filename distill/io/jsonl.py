"""JSONL notes, predictions and layered silver files (the formats in DESIGN.md).

Accepted per line: ``{"id", "text", ...}`` (plain notes), plus either ``"entities": [...]``
(one flat layer) or ``"spans": {"<layer>": [...]}`` (the richer layered form). Other keys
go to ``Document.meta``. Every problem names the file and line.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping

from distill.documents import Document, Span, SpanError, check_span

RESERVED = {"id", "text", "entities", "spans", "meta"}
log = logging.getLogger(__name__)


class FormatError(ValueError):
    """Malformed input: the message names the file, the line and the reason."""


def _open(path: str | os.PathLike, mode: str, gz: bool | None = None) -> IO[str]:
    p = str(path)
    if p.endswith(".gz") if gz is None else gz:
        return gzip.open(p, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(p, mode, encoding="utf-8", newline="" if "w" in mode else None)


def doc_from_record(
    rec: Any, entities_layer: str = "gold", where: str = "", rejected: list[str] | None = None,
    texts: Mapping[str, str] | None = None,
) -> Document:
    """Build a Document from one decoded JSON object, validating every span.

    With ``rejected`` given, an invalid span (bad offsets, text mismatch) is left out of the
    document and described in that list instead of failing the whole file — for scoring other
    systems' predictions, where the caller reports the count and first examples.
    With ``texts`` (document id → text, e.g. the gold set's), a record may leave out ``text``
    and its spans their ``text``: offsets alone are then taken against that text.
    """
    if not isinstance(rec, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if "id" not in rec or ("text" not in rec and texts is None):
        missing = [k for k in ("id", "text") if k not in rec]
        raise FormatError(f"{where}: missing required field(s) {missing}")
    doc_id = rec["id"]
    if isinstance(doc_id, int):
        doc_id = str(doc_id)
    if "text" not in rec:
        if not isinstance(doc_id, str) or doc_id not in texts:  # type: ignore[operator]
            raise FormatError(f"{where}: document {doc_id!r} has no 'text' and is not in the gold set to take it from")
        rec = {**rec, "text": texts[doc_id]}  # type: ignore[index]
    if not isinstance(rec.get("meta") or {}, dict):
        raise FormatError(f"{where}: 'meta' must be an object")
    meta = dict(rec.get("meta") or {})
    meta.update({k: v for k, v in rec.items() if k not in RESERVED})
    layers: dict[str, list[Span]] = {}
    try:
        if "entities" in rec:
            ents = rec["entities"]
            if not isinstance(ents, list):
                raise FormatError(f"{where}: 'entities' must be a list")
            for k, e in enumerate(ents):
                if not isinstance(e, dict):
                    raise FormatError(f"{where}: entities[{k}] must be an object with start, end, label, got {e!r:.60}")
                span = Span.from_dict(_with_text(e, rec["text"], texts), source=entities_layer)
                layers.setdefault(e.get("source") or entities_layer, []).append(span)
        if "spans" in rec:
            if not isinstance(rec["spans"], dict):
                raise FormatError(f"{where}: 'spans' must be an object of layer -> list")
            for name, lst in rec["spans"].items():
                if not isinstance(lst, list) or not all(isinstance(e, dict) for e in lst):
                    raise FormatError(f"{where}: spans[{name!r}] must be a list of objects with start, end, label")
                layers.setdefault(name, []).extend(Span.from_dict(_with_text(e, rec["text"], texts), source=name) for e in lst)
        if not isinstance(rec["text"], str):
            raise FormatError(f"{where}: 'text' must be a string")
        if rejected is not None:
            layers = {name: _keep_valid(rec["text"], spans, doc_id, where, rejected) for name, spans in layers.items()}
        return Document(doc_id, rec["text"], meta, layers)
    except (SpanError, ValueError, TypeError) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"{where}: {e}") from None


def _with_text(e: dict, text: Any, texts: Mapping[str, str] | None) -> dict:
    """A span record without ``text`` gets the document's characters at its offsets (only when
    the caller allows offset-only spans); out-of-range offsets are left for the span checks."""
    if texts is None or "text" in e or not isinstance(text, str):
        return e
    start, end = e.get("start"), e.get("end")
    if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start < end <= len(text):
        return {**e, "text": ""}
    frags = e.get("fragments")
    piece = " ".join(text[a:b] for a, b in frags) if frags else text[start:end]
    return {**e, "text": piece}


def _keep_valid(text: str, spans: list[Span], doc_id: str, where: str, rejected: list[str]) -> list[Span]:
    kept = []
    for span in spans:
        try:
            check_span(text, span, doc_id)
            kept.append(span)
        except SpanError as e:
            rejected.append(f"{where}: {e}")
    return kept


def read_jsonl(
    path: str | os.PathLike, entities_layer: str = "gold", rejected: list[str] | None = None,
    texts: Mapping[str, str] | None = None,
) -> Iterator[Document]:
    """Stream documents from a JSONL (or .jsonl.gz) file; fails on the first bad line.

    ``entities_layer`` names the layer that a flat ``entities`` list goes to (unless an entity
    carries its own ``source``). Blank lines are allowed; duplicate ids are an error. See
    :func:`doc_from_record` for ``rejected`` and ``texts``.
    """
    seen: set[str] = set()
    p = str(path)
    with (gzip.open(p, "rb") if p.endswith(".gz") else open(p, "rb")) as fh:  # bytes: bad UTF-8 gets a line number
        for lineno, raw in enumerate(fh, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise FormatError(f"{where}: not UTF-8 ({e.reason} at byte {e.start} of the line)") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise FormatError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            doc = doc_from_record(rec, entities_layer, where, rejected, texts)
            if doc.id in seen:
                raise FormatError(f"{where}: duplicate document id {doc.id!r}")
            seen.add(doc.id)
            yield doc


def doc_to_record(doc: Document, layers: Iterable[str] | None = None, flat: str | None = None) -> dict[str, Any]:
    """A JSON-ready dict: ``flat`` writes one layer as ``entities``; otherwise layered ``spans``."""
    rec: dict[str, Any] = {"id": doc.id, "text": doc.text}
    if doc.meta:
        rec["meta"] = doc.meta
    if flat is not None:
        rec["entities"] = [s.to_dict() for s in doc.layers.get(flat, [])]
    else:
        names = list(doc.layers) if layers is None else [n for n in layers if n in doc.layers]
        if names:
            rec["spans"] = {n: [s.to_dict() for s in doc.layers[n]] for n in names}
    return rec


def write_jsonl(
    docs: Iterable[Document],
    path: str | os.PathLike,
    layers: Iterable[str] | None = None,
    flat: str | None = None,
) -> int:
    """Write documents atomically (temp file + rename); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    layer_list = list(layers) if layers is not None else None
    try:
        with _open(tmp, "w", gz=path.name.endswith(".gz")) as fh:
            for doc in docs:
                fh.write(json.dumps(doc_to_record(doc, layer_list, flat), ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written temp file left beside the output
        raise
    return n


class JsonlAppender:
    """Append-only JSONL writer for resumable jobs: each line is flushed as it is written,
    so a killed run keeps every finished document and ``done_ids`` tells what to skip."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done_ids: set[str] = set()
        if self.path.exists():
            self._truncate_partial_tail()
            for doc_id in _ids_in(self.path):
                self.done_ids.add(doc_id)
        self._fh = open(self.path, "a", encoding="utf-8")

    def _truncate_partial_tail(self) -> None:
        """A kill mid-write leaves a last line without newline: keep it if it is whole JSON
        (only the newline was lost), otherwise drop just that line so its document is redone."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            try:
                json.loads(data[cut:])
                self.path.write_bytes(data + b"\n")
            except json.JSONDecodeError:
                log.warning("%s: dropped a half-written last record (%d bytes); it will be redone", self.path, len(data) - cut)
                self.path.write_bytes(data[:cut])

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.done_ids.add(str(record["id"]))

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ids_in(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield str(json.loads(line)["id"])
                except (json.JSONDecodeError, KeyError):
                    raise FormatError(f"{path}:{lineno}: unreadable record in a resumable output") from None
