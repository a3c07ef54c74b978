"""SNOMED CT RF2 Snapshot reader: active concepts, descriptions, IS-A ancestry, labels by semantic tag.

Users point it at their own licensed release folder (the one holding ``Snapshot/Terminology``);
the project ships no SNOMED content. The fully specified name's semantic tag decides the label,
because that is the one place RF2 says what kind of thing a concept is.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from distill.documents import DISEASE, MEDICATION, SYMPTOM
from ontologies._io import open_text

FSN = "900000000000003001"
SYNONYM = "900000000000013009"
IS_A = "116680003"

SEMANTIC_TAG_LABELS = {
    "disorder": DISEASE,
    "finding": SYMPTOM,
    "substance": MEDICATION,
    "product": MEDICATION,
    "medicinal product": MEDICATION,
    "medicinal product form": MEDICATION,
    "clinical drug": MEDICATION,
}
_TAG = re.compile(r"\(([^()]+)\)\s*$")


class Rf2FormatError(ValueError):
    """A release file that is missing or does not have the RF2 columns."""


@dataclass(frozen=True)
class Description:
    id: str
    concept_id: str
    term: str
    type_id: str
    language: str


def semantic_tag(fsn: str) -> str | None:
    """``"Asthma (disorder)"`` → ``"disorder"``."""
    m = _TAG.search(fsn)
    return m.group(1) if m else None


def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Rows of an RF2 file as dicts; blank and ``#`` lines (test fixtures only) are skipped."""
    header: list[str] | None = None
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line or line.startswith("#"):
                continue
            cols = line.split("\t")
            if header is None:
                header = cols
                missing = [c for c in columns if c not in header]
                if missing:
                    raise Rf2FormatError(f"{path}: header lacks RF2 column(s) {missing}")
                continue
            if len(cols) != len(header):
                raise Rf2FormatError(f"{path}:{lineno}: expected {len(header)} columns, got {len(cols)}")
            yield dict(zip(header, cols))


def _find(root: Path, prefix: str) -> Path:
    """The one ``<prefix>*Snapshot*.txt`` under ``root``; several (a folder holding more than one
    release) is an error, since silently picking one would mix or swap releases."""
    hits = sorted(p for p in root.rglob(f"{prefix}*.txt") if "Snapshot" in p.name)
    if not hits:
        raise Rf2FormatError(f"{root}: no {prefix}*Snapshot*.txt file (is this an RF2 release folder?)")
    if len(hits) > 1:
        listed = ", ".join(str(p.relative_to(root)) for p in hits)
        raise Rf2FormatError(f"{root}: {len(hits)} {prefix}*Snapshot*.txt files ({listed}); point at one "
                             f"release folder (the one holding Snapshot/Terminology)")
    return hits[0]


class Rf2Snapshot:
    """The active part of an RF2 Snapshot: concepts, their descriptions, and IS-A parents."""

    def __init__(self, release_dir: str | os.PathLike, language: str = "en"):
        root = Path(release_dir)
        if not root.is_dir():
            raise Rf2FormatError(f"SNOMED CT release folder not found: {root}")
        self.root = root
        self.concepts: set[str] = {
            r["id"] for r in _rows(_find(root, "sct2_Concept_"), ("id", "active")) if r["active"] == "1"
        }
        self.descriptions: dict[str, list[Description]] = defaultdict(list)
        for r in _rows(_find(root, "sct2_Description_"), ("id", "active", "conceptId", "languageCode", "typeId", "term")):
            if r["active"] == "1" and r["conceptId"] in self.concepts and r["languageCode"] == language:
                self.descriptions[r["conceptId"]].append(
                    Description(r["id"], r["conceptId"], r["term"], r["typeId"], r["languageCode"])
                )
        self.parents: dict[str, set[str]] = defaultdict(set)
        for r in _rows(_find(root, "sct2_Relationship_"), ("active", "sourceId", "destinationId", "typeId")):
            if r["active"] == "1" and r["typeId"] == IS_A and r["sourceId"] in self.concepts:
                self.parents[r["sourceId"]].add(r["destinationId"])

    def fsn(self, concept_id: str) -> str | None:
        return next((d.term for d in self.descriptions.get(concept_id, ()) if d.type_id == FSN), None)

    def label(self, concept_id: str) -> str | None:
        """The entity label implied by the concept's semantic tag, or None (procedures, body parts...)."""
        fsn = self.fsn(concept_id)
        tag = semantic_tag(fsn) if fsn else None
        return SEMANTIC_TAG_LABELS.get(tag) if tag else None

    def ancestors(self, concept_id: str) -> set[str]:
        """All IS-A ancestors (transitive), e.g. to keep only descendants of "Clinical finding"."""
        seen: set[str] = set()
        stack = list(self.parents.get(concept_id, ()))
        while stack:
            c = stack.pop()
            if c not in seen:
                seen.add(c)
                stack.extend(self.parents.get(c, ()))
        return seen

    def terms(self) -> Iterator[tuple[str, str, str]]:
        """``(term, label, "SCTID:<id>")`` for every active description of a labelled concept.

        The FSN is yielded without its semantic tag; synonyms as they are.
        """
        for cid, descs in self.descriptions.items():
            label = self.label(cid)
            if label is None:
                continue
            for d in descs:
                term = _TAG.sub("", d.term).strip() if d.type_id == FSN else d.term
                if term:
                    yield term, label, f"SCTID:{cid}"
