"""Step manifests: what a finished pipeline step read, how it was configured, and what it wrote.

A rerun skips a step only when its manifest still matches — same config fingerprint, same input
hashes, and every output still present with the hash recorded — so finished work is reused but
never trusted blindly (a hand-edited or truncated output makes the step run again).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

MANIFEST = "manifest.json"
_VERSIONED = ("clinical-distill", "torch", "transformers", "onnxruntime", "tokenizers")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of one file, read in blocks (model weights do not fit comfortably in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_hash(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names + contents, sorted)."""
    if not path.is_dir():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file() and q.name != MANIFEST):
        h.update(str(p.relative_to(path)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def hashes(paths: Iterable[Path]) -> dict[str, str]:
    return {str(p): file_hash(p) for p in paths}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class Manifest:
    step: str
    config: str
    inputs: dict[str, str]
    outputs: dict[str, str]
    seconds: float = 0.0
    finished: str = ""
    versions: dict[str, str] = field(default_factory=versions)
    summary: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2, default=str))
        tmp.replace(folder / MANIFEST)

    @classmethod
    def read(cls, folder: Path) -> "Manifest | None":
        path = folder / MANIFEST
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError):
            return None


def stale_reason(folder: Path, config: str, inputs: Iterable[Path]) -> str | None:
    """Why a step must run (None when its manifest still matches)."""
    m = Manifest.read(folder)
    if m is None:
        return "no finished run on record"
    if m.config != config:
        return "its settings changed"
    inputs = list(inputs)
    if set(m.inputs) != {str(p) for p in inputs}:
        return "its inputs changed"
    for p in inputs:
        if not p.exists() or file_hash(p) != m.inputs[str(p)]:
            return f"input {p} changed"
    for out, digest in m.outputs.items():
        path = Path(out)
        if not path.exists():
            return f"output {out} is missing"
        if file_hash(path) != digest:
            return f"output {out} was modified"
    return None


def finish(folder: Path, step: str, config: str, inputs: Iterable[Path], outputs: Iterable[Path],
           started: float, summary: dict[str, Any] | None = None) -> Manifest:
    m = Manifest(step, config, hashes(inputs), hashes(outputs), round(time.time() - started, 2),
                 time.strftime("%Y-%m-%dT%H:%M:%S%z"), summary=summary or {})
    m.write(folder)
    return m
