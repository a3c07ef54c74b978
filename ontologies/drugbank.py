"""DrugBank Open Data vocabulary CSV (CC0): drug names and synonyms keyed by DrugBank id."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Iterator

from ontologies._io import open_text

COLUMNS = ("DrugBank ID", "Accession Numbers", "Common name", "CAS", "UNII", "Synonyms", "Standard InChI Key")


@dataclass
class DrugBankDrug:
    id: str
    name: str
    synonyms: list[str]

    def names(self) -> list[str]:
        return [self.name] + [s for s in self.synonyms if s != self.name]


def read_drugbank_vocabulary(path: str | os.PathLike) -> Iterator[DrugBankDrug]:
    """Yield one entry per drug; synonyms are the ``" | "``-separated field of the release."""
    with open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(h.strip().lstrip("\ufeff") for h in header[:3]) != COLUMNS[:3]:
            raise ValueError(f"{path}: not a DrugBank vocabulary CSV (header {header!r}, expected {COLUMNS})")
        idx_syn = header.index("Synonyms")
        for lineno, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{lineno}: expected {len(header)} columns, got {len(row)}")
            syns = [s.strip() for s in row[idx_syn].split(" | ") if s.strip()]
            yield DrugBankDrug(id=row[0], name=row[2].strip(), synonyms=syns)
