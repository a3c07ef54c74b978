"""SQLite cache of LLM requests and responses, so a rerun of a labelling job costs nothing.

The key is (teacher fingerprint, prompt version, hash of the exact request text): changing
the model, its decoding settings, the prompt wording or the note text misses the cache,
anything else hits it. Only answers that parsed are stored, so a malformed answer is asked
again next time instead of being replayed forever; answers cut by the output cap are not
stored either (the key has no cap: a rerun with a larger one must not replay them). Requests are stored as hashes, but the
answers quote entity strings from the notes: keep the cache file as private as the notes.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from teachers.base import FALSE_WORDS, TRUE_WORDS, parse_flag

DEFAULT_PATH = Path(os.environ.get("DISTILL_CACHE_DIR", Path.home() / ".cache" / "clinical-distill")) / "llm_cache.sqlite"


@dataclass
class CachedResponse:
    """What a request returned: the answer text and what it cost."""

    content: str
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str = "stop"
    batch: bool = False


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """A thread-safe SQLite key-value store of :class:`CachedResponse` (WAL mode)."""

    def __init__(self, path: str | os.PathLike = DEFAULT_PATH):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " fingerprint TEXT NOT NULL, prompt_version TEXT NOT NULL, text_hash TEXT NOT NULL,"
                " response TEXT NOT NULL, created REAL NOT NULL,"
                " PRIMARY KEY (fingerprint, prompt_version, text_hash))"
            )

    def get(self, fingerprint: str, prompt_version: str, request_text: str) -> CachedResponse | None:
        with self._lock:
            row = self._db.execute(
                "SELECT response FROM responses WHERE fingerprint=? AND prompt_version=? AND text_hash=?",
                (fingerprint, prompt_version, text_hash(request_text)),
            ).fetchone()
        return CachedResponse(**json.loads(row[0])) if row else None

    def put(self, fingerprint: str, prompt_version: str, request_text: str, response: CachedResponse) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                (fingerprint, prompt_version, text_hash(request_text), json.dumps(asdict(response)), time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_cache(cache: "ResponseCache | str | os.PathLike | bool | None") -> ResponseCache | None:
    """Teacher option -> cache: a path, an open cache, True/None or a yes-word ("true", "on",
    "yes", "1") for the default file, False or a no-word ("false", "off", "no", "none", "0")
    for none (benchmarks that must measure real requests). Words are never taken as file names."""
    if isinstance(cache, ResponseCache):
        return cache
    if cache is None or isinstance(cache, bool) or (isinstance(cache, str) and cache.strip().lower() in TRUE_WORDS | FALSE_WORDS):
        return ResponseCache(DEFAULT_PATH) if cache is None or parse_flag(cache, "cache") else None
    return ResponseCache(cache)
