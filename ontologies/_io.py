"""Opening release files as text whether or not they are gzipped (releases ship both ways)."""
from __future__ import annotations

import gzip
import os
from typing import IO


def open_text(path: str | os.PathLike, encoding: str = "utf-8") -> IO[str]:
    """Open ``path`` for reading text; ``.gz`` files are decompressed on the fly.

    ``newline=""`` keeps CRLF releases (RRF, RF2) from leaving ``\\r`` in the last column.
    """
    p = os.fspath(path)
    if p.endswith(".gz"):
        return gzip.open(p, "rt", encoding=encoding, newline="")  # type: ignore[return-value]
    return open(p, "r", encoding=encoding, newline="")
