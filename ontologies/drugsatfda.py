"""Drugs@FDA ``Products.txt`` (public domain): brand names and active ingredients."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

from ontologies._io import open_text

COLUMNS = ("ApplNo", "ProductNo", "Form", "Strength", "ReferenceDrug", "DrugName", "ActiveIngredient", "ReferenceStandard")


@dataclass
class FdaProduct:
    appl_no: str
    product_no: str
    form: str
    strength: str
    drug_name: str
    active_ingredients: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"FDA:{self.appl_no}/{self.product_no}"


def read_products(path: str | os.PathLike) -> Iterator[FdaProduct]:
    """Yield product rows; combination ingredients (``A; B``) are split into a tuple.

    The FDA file is ASCII in practice but has stray Latin-1 bytes in old releases.
    """
    with open_text(path, encoding="latin-1") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        if tuple(header[: len(COLUMNS) - 1]) != COLUMNS[:-1]:
            raise ValueError(f"{path}: not a Drugs@FDA Products file (header {header!r})")
        for lineno, line in enumerate(fh, 2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cols = line.split("\t")
            if len(cols) < 7:
                raise ValueError(f"{path}:{lineno}: expected {len(COLUMNS)} tab-separated columns, got {len(cols)}")
            ingredients = tuple(i.strip() for i in cols[6].split(";") if i.strip())
            yield FdaProduct(cols[0], cols[1], cols[2], cols[3], cols[5].strip(), ingredients)
