"""PubTator reader (NCBI-disease, BC5CDR): ``PMID|t|title``, ``PMID|a|abstract``, then one tab
line per mention ``PMID start end mention type concept [individual mentions]``, blank line
between documents.

Offsets index ``title + " " + abstract``, so that is the document text (the title's length is
kept in ``meta`` for anyone who needs the boundary). Composite mentions keep their ``|``/``+``
concept ids in ``span.concept`` and the 7th column's pieces in ``span.attributes["composite"]``.
Relation lines (``PMID CID chem disease``) are counted, not used.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Mapping

from distill.documents import GOLD, Document, Span
from distill.io.jsonl import FormatError
from distill.io.report import ReadReport, check_mismatch_policy



class _Block:
    def __init__(self, pmid: str, line: int):
        self.pmid, self.line = pmid, line
        self.title: str | None = None
        self.abstract: str | None = None
        self.mentions: list[tuple[int, list[str]]] = []
        self.raw: list[str] = []


def _blocks(path: Path, report: ReadReport) -> Iterator[_Block]:
    block: _Block | None = None
    with open(path, encoding="utf-8", newline="") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\r\n")
            where = f"{path}:{lineno}"
            if not line.strip():
                if block is not None:
                    yield block
                    block = None
                continue
            head = line.split("|", 2)
            if len(head) == 3 and head[1] in ("t", "a") and "\t" not in head[0]:
                pmid, kind, body = head
                if block is None:
                    block = _Block(pmid, lineno)
                elif pmid != block.pmid:
                    raise FormatError(f"{where}: {kind} line for PMID {pmid} inside the block of {block.pmid} (missing blank line?)")
                if kind == "t":
                    if block.title is not None:
                        raise FormatError(f"{where}: second title line for PMID {pmid}")
                    block.title = body
                else:
                    if block.title is None or block.abstract is not None:
                        raise FormatError(f"{where}: abstract line for PMID {pmid} must follow exactly one title line")
                    block.abstract = body
                block.raw.append(line)
                continue
            cols = line.split("\t")
            if block is None:
                raise FormatError(f"{where}: annotation line before any 'PMID|t|title' line: {line[:80]!r}")
            if cols[0] != block.pmid:
                raise FormatError(f"{where}: annotation for PMID {cols[0]} inside the block of {block.pmid}")
            if len(cols) >= 3 and cols[1].isdigit() and cols[2].isdigit():
                if len(cols) not in (6, 7):
                    raise FormatError(f"{where}: mention line needs 6 or 7 tab-separated columns, has {len(cols)}")
                block.mentions.append((lineno, cols))
            elif len(cols) in (6, 7):  # a mention line whose offsets are not numbers: never a relation
                raise FormatError(f"{where}: mention offsets must be non-negative integers, got {cols[1]!r} {cols[2]!r}")
            elif len(cols) in (4, 5) and not cols[1].isdigit():  # PMID, type, id1, id2 [, novelty]
                report.skipped_lines[f"relation ({cols[1]})"] += 1
            else:
                raise FormatError(f"{where}: neither a mention line (PMID start end mention type concept) nor a relation line: {line[:80]!r}")
            block.raw.append(line)
    if block is not None:
        yield block


def read_pubtator(
    path: str | os.PathLike,
    label_map: Mapping[str, str] | None = None,
    layer: str = GOLD,
    *,
    on_mismatch: str = "raise",
    report: ReadReport | None = None,
    select: Callable[[str], bool] | None = None,
) -> Iterator[Document]:
    """Stream Documents from one PubTator file (``select(pmid)`` skips documents before they are
    parsed or counted: splits).

    Types outside ``label_map`` are dropped and counted (``None`` keeps all). A mention whose
    column differs from the text only by surrounding whitespace (a known NCBI-disease quirk)
    is kept with the text's own string and counted as a problem; any other mismatch raises
    FormatError, or with ``on_mismatch="report"`` is left out and counted. A PMID repeated
    with an identical block is kept once and reported; repeated with different content, it
    is an error.
    """
    check_mismatch_policy(on_mismatch)
    path = Path(path)
    report = report if report is not None else ReadReport(source=str(path))
    if not report.source:
        report.source = str(path)
    seen: dict[str, list[str]] = {}
    for b in _blocks(path, report):
        where = f"{path}:{b.line}"
        if b.title is None or b.abstract is None:
            raise FormatError(f"{where}: PMID {b.pmid} needs a title (|t|) and an abstract (|a|) line")
        if b.pmid in seen:
            if seen[b.pmid] != b.raw:
                raise FormatError(f"{where}: PMID {b.pmid} appears twice with different content")
            report.problem("duplicate document (identical, kept once)", f"{where}: PMID {b.pmid} repeated")
            continue
        seen[b.pmid] = b.raw
        if select is not None and not select(b.pmid):
            continue
        text = b.title + " " + b.abstract
        spans: list[Span] = []
        for lineno, cols in b.mentions:
            mwhere = f"{path}:{lineno}"
            start, end, mention, typ, concept = int(cols[1]), int(cols[2]), cols[3], cols[4], cols[5]
            label = typ if label_map is None else label_map.get(typ)
            if label is None:
                report.dropped_types[typ] += 1
                continue
            if end <= start or end > len(text):
                msg = f"{mwhere}: offsets {start}-{end} out of range (text has {len(text)} characters)"
                if on_mismatch == "raise":
                    raise FormatError(msg)
                report.problem("offsets out of range", msg)
                continue
            actual = text[start:end]
            if actual != mention:
                msg = f"{mwhere}: {typ} {start}-{end} says {mention!r} but the text there is {actual!r}"
                if actual == mention.strip():
                    report.problem("mention column has extra whitespace (kept, text from the document)", msg)
                elif on_mismatch == "raise":
                    raise FormatError(msg + " (on_mismatch='report' keeps going and counts these)")
                else:
                    report.problem("span text mismatch", msg)
                    continue
            attrs = {"type": typ}
            if len(cols) == 7 and cols[6]:
                attrs["composite"] = cols[6].split("|")
            spans.append(Span(start, end, label, actual, layer, concept=concept or None, attributes=attrs))
            report.kept[label] += 1
        report.documents += 1
        yield Document(b.pmid, text, {"title_length": len(b.title), "source_file": path.name}, {layer: spans})
