"""The teacher protocol, its usage ledger, and the resumable labelling runner.

Every labelling source — dictionary matcher or LLM — is a named annotator that turns documents
into span lists (skweak's idea). The runner, not the teacher, owns resumability: it appends one
finished document per line, so a killed run re-sends nothing that was already labelled.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, runtime_checkable

from tqdm.auto import tqdm

from distill.documents import Document, Span
from distill.io.jsonl import JsonlAppender, doc_to_record, read_jsonl


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "none"})


def parse_flag(value: Any, name: str = "option") -> bool:
    """An on/off option given as a bool or a CLI/recipe string; a word that is neither is an
    error, so a typo never silently switches a feature off."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{name}={value!r}: expected one of {', '.join(sorted(TRUE_WORDS | FALSE_WORDS))}")


@dataclass
class Usage:
    """What a teacher consumed: the numbers the cost model and the report need."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_requests: int = 0
    seconds: float = 0.0
    dollars: float = 0.0
    documents: int = 0
    failures: int = 0

    def add(self, other: "Usage") -> "Usage":
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Teacher(Protocol):
    """``name`` becomes the layer name (e.g. ``ontology:open``, ``openai:gpt-4o-mini``).

    ``label`` streams one span list per input document, in order; a document the teacher could
    not label raises or yields a :class:`LabelFailure` instead of an empty list, so that
    "found nothing" and "failed" are never confused.
    """

    name: str
    usage: Usage

    def label(self, docs: Iterable[Document]) -> Iterator[list[Span]]: ...


class LabelFailure(list):
    """An empty span list that records why a document could not be labelled."""

    def __init__(self, reason: str):
        super().__init__()
        self.reason = reason

    def __repr__(self) -> str:
        return f"LabelFailure({self.reason!r})"


@dataclass
class LabelResult:
    """Summary of a labelling run (what ``distill label`` prints and writes beside the output)."""

    teacher: str
    output: str
    labelled: int = 0
    skipped_done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    spans: int = 0
    usage: Usage = field(default_factory=Usage)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["usage"] = self.usage.to_dict()
        return d


#: how often (in documents) a running job rewrites its ledger, so a killed run keeps its cost
LEDGER_EVERY = 10


def label_corpus(
    teacher: Teacher,
    docs: Iterable[Document],
    out: str | os.PathLike,
    total: int | None = None,
    progress: bool = True,
) -> LabelResult:
    """Label ``docs`` into ``out`` (JSONL, one layer named after the teacher), resumably.

    Documents already in ``out`` are skipped; failures are recorded in ``<out>.failures.jsonl``
    (one line per document still failing: documents labelled since are pruned from it) and the
    usage ledger in ``<out>.usage.json`` — rewritten every ``LEDGER_EVERY`` documents and when
    the run ends, however it ends, so a killed run's paid requests stay on the ledger; its
    ``failures`` counts the documents still failing. A rerun retries only what failed.
    An ``out`` written by another teacher is refused (its documents would count as done).
    Empty notes are labelled with an empty layer (there is nothing to find), never sent.
    """
    out = Path(out)
    result = LabelResult(teacher=teacher.name, output=str(out))
    failures_path = out.with_name(out.name + ".failures.jsonl")
    usage_path = out.with_name(out.name + ".usage.json")
    start_usage = Usage().add(teacher.usage)
    ledger_teacher = json.loads(usage_path.read_text()).get("teacher") if usage_path.exists() else None
    if ledger_teacher not in (None, teacher.name):
        raise ValueError(f"{out} holds labels of {ledger_teacher}, not {teacher.name}: use another --out")
    earlier = _read_usage_file(usage_path)  # resumed runs: the ledger accumulates
    t0 = time.perf_counter()

    def run_usage() -> Usage:
        usage = Usage().add(teacher.usage)
        for k, v in start_usage.to_dict().items():
            setattr(usage, k, getattr(usage, k) - v)
        usage.seconds = usage.seconds or time.perf_counter() - t0
        usage.documents = result.labelled
        usage.failures = len(result.failed)
        return usage

    def write_ledger() -> None:
        total = Usage().add(earlier).add(run_usage())
        total.failures = len(_failing_ids(failures_path) - sink.done_ids)  # not a sum over reruns
        _write_usage_file(usage_path, teacher.name, total)

    sink = JsonlAppender(out)  # first: it repairs a half-written last line that read_jsonl would refuse
    if sink.done_ids:
        try:
            _check_layers(out, teacher.name)
        except Exception:
            sink.close()
            raise
    try:
        _end_last_line(failures_path)
        with open(failures_path, "a", encoding="utf-8") as fail_fh:
            pending = []
            for doc in docs:
                if doc.id in sink.done_ids:
                    result.skipped_done += 1
                else:
                    pending.append(doc)
            bar = tqdm(total=len(pending), desc=f"label {teacher.name}", unit="note", disable=not progress)
            todo = [d for d in pending if d.text.strip()]
            for doc in pending:
                if not doc.text.strip():
                    sink.write(doc_to_record(doc.with_layers(**{teacher.name: []}), layers=[teacher.name]))
                    result.labelled += 1
                    bar.update()
            for n, (doc, spans) in enumerate(zip(todo, teacher.label(todo)), 1):
                if isinstance(spans, LabelFailure):
                    result.failed[doc.id] = spans.reason
                    fail_fh.write(json.dumps({"id": doc.id, "teacher": teacher.name, "reason": spans.reason}) + "\n")
                    fail_fh.flush()
                else:
                    labelled = doc.with_layers(**{teacher.name: [s if s.source else s.with_source(teacher.name) for s in spans]})
                    sink.write(doc_to_record(labelled, layers=[teacher.name]))
                    result.labelled += 1
                    result.spans += len(spans)
                bar.update()
                if n % LEDGER_EVERY == 0:
                    write_ledger()
            bar.close()
    finally:
        sink.close()
        try:
            _prune_failures(failures_path, sink.done_ids)
        finally:
            write_ledger()
    result.usage = run_usage()
    return result


def _check_layers(out: Path, name: str) -> None:
    """Refuse to resume into a file of another teacher: its documents lack ``name``'s layer, so
    they would be skipped as done and the run would silently label nothing."""
    others: set[str] = set()
    missing = 0
    for doc in read_jsonl(out):
        if name not in doc.layers:
            missing += 1
            others.update(doc.layers)
    if missing:
        what = ", ".join(sorted(others)) if others else f"{missing} document(s) without a layer"
        raise ValueError(f"{out} holds labels of {what}, not {name}: use another --out")


def _end_last_line(path: Path) -> None:
    """End a killed run's half-written last line, so that a new record is not glued onto it."""
    if path.exists() and path.stat().st_size:
        with open(path, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")


def _failing_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {i for ln in path.read_text(encoding="utf-8").splitlines() if (i := _record_id(ln)) is not None}


def _prune_failures(path: Path, done_ids: set[str]) -> None:
    """Keep one record per document still failing (the latest reason; reruns append again):
    the file lists what is still missing."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    last = {rid: k for k, ln in enumerate(lines) if (rid := _record_id(ln)) is not None}
    keep = [ln for k, ln in enumerate(lines)  # a line without a readable id is kept, never silently dropped
            if (rid := _record_id(ln)) is None or (rid not in done_ids and last[rid] == k)]
    if len(keep) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(keep), encoding="utf-8")
        os.replace(tmp, path)


def _record_id(line: str) -> str | None:
    try:
        return str(json.loads(line)["id"])
    except (json.JSONDecodeError, KeyError, TypeError):
        return None  # a half-written line of a killed run: kept, never silently dropped


def _read_usage_file(path: Path) -> Usage:
    return Usage(**json.loads(path.read_text()).get("usage", {})) if path.exists() else Usage()


def _write_usage_file(path: Path, teacher: str, total: Usage) -> None:
    """Write the ledger atomically (temp file + rename): a kill mid-write keeps the previous one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"teacher": teacher, "usage": total.to_dict()}, indent=2))
    os.replace(tmp, path)


def read_usage(out: str | os.PathLike) -> Usage:
    """The accumulated ledger written beside a labelling output."""
    path = Path(str(out) + ".usage.json")
    return Usage(**json.loads(path.read_text())["usage"]) if path.exists() else Usage()


def load_layers(paths: Iterable[str | os.PathLike]) -> list[Document]:
    """Merge several labelling outputs (one layer each) into documents with all layers."""
    merged: dict[str, Document] = {}
    for p in paths:
        for doc in read_jsonl(p):
            if doc.id in merged:
                base = merged[doc.id]
                if base.text != doc.text:
                    raise ValueError(f"{p}: document {doc.id!r} has a different text than in an earlier file")
                for name, spans in doc.layers.items():
                    base.set_layer(name, spans)
            else:
                merged[doc.id] = doc
    return list(merged.values())
