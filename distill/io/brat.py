"""BRAT standoff reader (folders of ``.txt`` + ``.ann``, or a zip of them).

Kept: ``T`` entities (discontinuous ones as fragments plus their bounding extent, text joined by
one space as brat writes it; checked in the file's fragment order, stored in reading order), attributes (``A``/``M`` lines, also when they point at an ``E``
event whose trigger is the entity — MACCROBAT puts POLARITY=NEG there). Counted but not used:
relations (``R``), equivalences (``*``), normalisations (``N``), notes (``#``), and entity types
outside the label map. Texts are decoded from bytes so CRLF stays two characters: brat offsets
count it that way (Chia).
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from distill.documents import GOLD, Document, Span
from distill.io.jsonl import FormatError
from distill.io.report import ReadReport, check_mismatch_policy

SKIPPED_KINDS = {"R": "relation (R)", "*": "equivalence (*)", "N": "normalization (N)", "#": "note (#)"}
NEGATION_ATTRIBUTES = {"negation", "negated"}


@dataclass
class _Entity:
    line: int
    type: str
    fragments: tuple[tuple[int, int], ...]
    surface: str
    attributes: dict = field(default_factory=dict)


def _attribute_value(name: str, value: str | None) -> dict:
    """brat attribute -> span attributes; NEG polarity and binary Negation set ``negated``."""
    key = name.lower()
    out: dict = {key: value if value is not None else True}
    if (value is None and key in NEGATION_ATTRIBUTES) or (key == "polarity" and value == "NEG"):
        out["negated"] = True
    return out


def _parse_fragments(spec: str, where: str) -> tuple[tuple[int, int], ...]:
    frags = []
    for piece in spec.split(";"):
        nums = piece.split()
        if len(nums) != 2 or not all(n.isdigit() for n in nums):
            raise FormatError(f"{where}: bad offsets {piece!r} (expected 'start end', fragments joined by ';')")
        a, b = int(nums[0]), int(nums[1])
        if b <= a:
            raise FormatError(f"{where}: empty or reversed fragment {a} {b}")
        frags.append((a, b))
    return tuple(frags)


def parse_ann(ann: str, name: str = "<ann>") -> tuple[dict[str, _Entity], dict[str, int]]:
    """Parse one ``.ann`` text into entities (with attributes resolved through E lines) and
    counts of the line kinds that were skipped. Malformed lines raise FormatError(file:line)."""
    entities: dict[str, _Entity] = {}
    event_trigger: dict[str, str] = {}
    attrs: list[tuple[int, str, str, str | None]] = []
    skipped: dict[str, int] = {}
    for lineno, raw in enumerate(ann.split("\n"), 1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        kind = line[0]
        cols = line.split("\t")
        if kind == "T":
            if len(cols) < 3:
                raise FormatError(f"{where}: T line needs 3 tab-separated columns (id, 'Type start end', text): {line!r}")
            tid, mid, surface = cols[0], cols[1], "\t".join(cols[2:])
            typ, _, offsets = mid.partition(" ")
            if not typ or not offsets:
                raise FormatError(f"{where}: T line needs 'Type start end' in column 2, got {mid!r}")
            if tid in entities:
                raise FormatError(f"{where}: duplicate entity id {tid!r}")
            entities[tid] = _Entity(lineno, typ, _parse_fragments(offsets, where), surface)
        elif kind == "E":
            if len(cols) < 2 or ":" not in cols[1]:
                raise FormatError(f"{where}: E line needs 'Type:T<n>' in column 2: {line!r}")
            trigger = cols[1].split()[0].partition(":")[2]
            event_trigger[cols[0]] = trigger
        elif kind in "AM":
            parts = cols[1].split() if len(cols) >= 2 else []
            if len(parts) not in (2, 3):
                raise FormatError(f"{where}: attribute line needs 'Name Target [Value]': {line!r}")
            attrs.append((lineno, parts[0], parts[1], parts[2] if len(parts) == 3 else None))
        elif kind in SKIPPED_KINDS:
            skipped[SKIPPED_KINDS[kind]] = skipped.get(SKIPPED_KINDS[kind], 0) + 1
        else:
            raise FormatError(f"{where}: unknown brat line type {kind!r}: {line!r}")
    for tid_e, trig in event_trigger.items():
        if trig not in entities:
            raise FormatError(f"{name}: event {tid_e} points at unknown entity {trig!r}")
    for lineno, aname, target, value in attrs:
        tid = event_trigger.get(target, target)
        if tid not in entities:
            raise FormatError(f"{name}:{lineno}: attribute {aname} points at unknown id {target!r}")
        entities[tid].attributes.update(_attribute_value(aname, value))
    return entities, skipped


def parse_brat(
    doc_id: str,
    text: str,
    ann: str,
    label_map: Mapping[str, str] | None = None,
    layer: str = GOLD,
    *,
    on_mismatch: str = "raise",
    report: ReadReport | None = None,
    name: str | None = None,
) -> Document:
    """One Document from a ``.txt`` text and its ``.ann`` text.

    ``label_map`` maps brat types to labels; types not in it are dropped and counted
    (``None`` keeps every type as is). A span whose offsets fall outside the text or whose
    surface differs from the text raises FormatError, or with ``on_mismatch="report"`` is left
    out and counted in ``report`` with an example.
    """
    check_mismatch_policy(on_mismatch)
    report = report if report is not None else ReadReport()
    name = name or f"{doc_id}.ann"
    entities, skipped = parse_ann(ann, name)
    report.skipped_lines.update(skipped)
    spans: list[Span] = []
    for tid, ent in entities.items():
        label = ent.type if label_map is None else label_map.get(ent.type)
        if label is None:
            report.dropped_types[ent.type] += 1
            continue
        where = f"{name}:{ent.line}"
        start, end = min(a for a, _ in ent.fragments), max(b for _, b in ent.fragments)
        if end > len(text):
            msg = f"{where}: {tid} offsets {start}-{end} out of range (text has {len(text)} characters)"
            if on_mismatch == "raise":
                raise FormatError(msg)
            report.problem("offsets out of range", msg)
            continue
        actual = " ".join(text[a:b] for a, b in ent.fragments)
        if actual != ent.surface:
            msg = f"{where}: {tid} {ent.type} {start}-{end} says {ent.surface!r} but the text there is {actual!r}"
            if on_mismatch == "raise":
                raise FormatError(msg + " (on_mismatch='report' keeps going and counts these)")
            report.problem("span text mismatch", msg)
            continue
        frags = tuple(sorted(ent.fragments)) if len(ent.fragments) > 1 else None
        if frags and frags != ent.fragments:  # Chia lists some fragments out of order
            actual = " ".join(text[a:b] for a, b in frags)
        spans.append(Span(start, end, label, actual, layer, fragments=frags, attributes=dict(ent.attributes)))
        report.kept[label] += 1
    report.documents += 1
    return Document(doc_id, text, {"source_file": name}, {layer: spans})


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None


def _unique_ids(bases: list[str], where: str) -> None:
    """Document ids are file stems; two files with one stem in different subfolders would make one
    document shadow the other (in scoring, in JSONL), so that is an error, not a silent loss."""
    seen: dict[str, str] = {}
    for b in bases:
        stem = Path(b).name
        if stem in seen:
            raise FormatError(f"{where}: two documents named {stem!r} ({seen[stem]} and {b}); document ids are file "
                              f"names, so rename one or read the subfolders separately")
        seen[stem] = b


def _folder_pairs(folder: Path) -> Iterator[tuple[str, str, Callable[[], bytes], Callable[[], bytes] | None]]:
    """Pairs from the folder and its subfolders (as in a zip), sorted by document id."""
    txts = {p.with_suffix("").relative_to(folder).as_posix(): p for p in folder.rglob("*.txt")}
    anns = {p.with_suffix("").relative_to(folder).as_posix(): p for p in folder.rglob("*.ann")}
    for rel in sorted(anns.keys() - txts.keys()):
        raise FormatError(f"{anns[rel]}: no matching text file {anns[rel].with_suffix('.txt')}")
    _unique_ids(sorted(txts), str(folder))
    for rel in sorted(txts, key=lambda r: Path(r).name):
        ann = anns.get(rel)
        yield Path(rel).name, str(folder / rel), txts[rel].read_bytes, (ann.read_bytes if ann else None)


def _zip_pairs(path: Path) -> Iterator[tuple[str, str, Callable[[], bytes], Callable[[], bytes] | None]]:
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        txts = {n[:-4]: n for n in names if n.endswith(".txt")}
        anns = {n[:-4]: n for n in names if n.endswith(".ann")}
        for base in sorted(anns.keys() - txts.keys()):
            raise FormatError(f"{path}!{anns[base]}: no matching text file {base}.txt in the zip")
        _unique_ids(sorted(txts), str(path))
        for base in sorted(txts, key=lambda b: Path(b).name):
            ann = anns.get(base)
            yield (
                Path(base).name,
                f"{path}!{base}",
                (lambda n=txts[base]: zf.read(n)),
                (lambda n=ann: zf.read(n)) if ann else None,
            )


def read_brat(
    folder: str | os.PathLike,
    label_map: Mapping[str, str] | None = None,
    layer: str = GOLD,
    *,
    on_mismatch: str = "raise",
    report: ReadReport | None = None,
    select: Callable[[str], bool] | None = None,
) -> Iterator[Document]:
    """Stream Documents (sorted by id = file stem) from a brat folder or a ``.zip`` of one.

    ``select(doc_id)`` filters documents before they are parsed (splits). A ``.ann`` without its
    ``.txt`` is an error; a ``.txt`` without ``.ann`` gives a document with an empty layer, counted
    in ``report`` as a problem so it is visible. Pass a ``ReadReport`` to see what was dropped.
    """
    path = Path(folder)
    if not path.exists():
        raise FileNotFoundError(f"brat corpus not found: {path}")
    report = report if report is not None else ReadReport(source=str(path))
    if not report.source:
        report.source = str(path)
    if path.is_dir():
        pairs = _folder_pairs(path)
    elif zipfile.is_zipfile(path):
        pairs = _zip_pairs(path)
    else:
        raise FormatError(f"{path}: neither a brat folder nor a zip of one")
    for doc_id, base, read_txt, read_ann in pairs:
        if select is not None and not select(doc_id):
            continue
        text = _decode(read_txt(), base + ".txt")
        if read_ann is None:
            report.problem("text without .ann (empty layer)", f"{base}.txt has no {base}.ann")
            ann = ""
        else:
            ann = _decode(read_ann(), base + ".ann")
        yield parse_brat(doc_id, text, ann, label_map, layer, on_mismatch=on_mismatch, report=report, name=base + ".ann")


def write_brat(docs: Iterable[Document], folder: str | os.PathLike, layer: str = GOLD) -> int:
    """Write ``<id>.txt`` + ``<id>.ann`` per document (``T`` lines for layer ``layer``, fragments of
    discontinuous spans joined by ``;``, ``A Negation`` for negated spans), readable by brat and by
    ``read_brat``. Text is written byte-exact (newline translation off) so offsets stay valid.
    A document without ``layer`` gets an empty ``.ann`` (``distill convert`` warns about those)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for doc in docs:
        if not doc.id or "/" in doc.id or doc.id in (".", ".."):
            raise FormatError(f"document id {doc.id!r} cannot be a brat file name")
        lines: list[str] = []
        for k, s in enumerate(sorted(doc.layers.get(layer, []), key=lambda x: (x.start, x.end, x.label)), 1):
            frags = s.fragments or ((s.start, s.end),)
            surface = " ".join(doc.text[a:b] for a, b in frags).replace("\n", " ").replace("\r", " ")
            lines.append(f"T{k}\t{s.label} {';'.join(f'{a} {b}' for a, b in frags)}\t{surface}")
            if s.negated:
                lines.append(f"A{k}\tNegation T{k}")
        with open(out / f"{doc.id}.txt", "w", encoding="utf-8", newline="") as f:
            f.write(doc.text)
        with open(out / f"{doc.id}.ann", "w", encoding="utf-8", newline="") as f:
            f.write("".join(line + "\n" for line in lines))
        n += 1
    return n
