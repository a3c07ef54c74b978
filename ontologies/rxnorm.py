"""RxNorm: the ``RXNCONSO.RRF`` release file, the RxNorm-derived name list, and the RxNav REST API.

The RRF reader keeps what a medication matcher needs (ingredient, brand and clinical-drug names
of SAB=RXNORM) and drops suppressed atoms. The RxNav client is a small ``requests`` wrapper:
a rate limit below NLM's 20 requests/second, tenacity retries with backoff on 429/5xx and
connection errors, and an on-disk SQLite cache so a repeated lookup never goes out again.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ontologies._io import open_text

# The 18 columns of RXNCONSO.RRF (RxNorm Technical Documentation, section 12.5); every line
# ends with a trailing "|", so a split gives 19 fields, the last one empty.
RXNCONSO_COLUMNS = (
    "RXCUI", "LAT", "TS", "LUI", "STT", "SUI", "ISPREF", "RXAUI", "SAUI",
    "SCUI", "SDUI", "SAB", "TTY", "CODE", "STR", "SRL", "SUPPRESS", "CVF",
)
# Ingredients (IN, precise PIN, multiple MIN), brands (BN), clinical and branded drugs (SCD, SBD),
# and their synonyms (SY, TMSY: tall-man lettering).
DEFAULT_TTYS = frozenset({"IN", "PIN", "MIN", "BN", "SCD", "SBD", "SY", "TMSY"})
# SUPPRESS: N = not suppressed; O = obsolete, Y = suppressed by editors, E = suppressed by NLM.
SUPPRESSED = frozenset({"O", "Y", "E"})


@dataclass(frozen=True)
class RxAtom:
    rxcui: str
    name: str
    tty: str
    sab: str = "RXNORM"

    @property
    def concept(self) -> str:
        return f"RXNORM:{self.rxcui}"


class RrfFormatError(ValueError):
    """A line that does not have the 18-column RXNCONSO layout."""


def read_rxnconso(
    path: str | os.PathLike,
    sabs: Iterable[str] | None = ("RXNORM",),
    ttys: Iterable[str] | None = DEFAULT_TTYS,
    language: str = "ENG",
) -> Iterator[RxAtom]:
    """Yield the kept atoms of an ``RXNCONSO.RRF`` file; ``None`` for sabs/ttys keeps all."""
    sab_set = frozenset(sabs) if sabs is not None else None
    tty_set = frozenset(ttys) if ttys is not None else None
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cols = line.split("|")
            if len(cols) != len(RXNCONSO_COLUMNS) + 1 or cols[-1] != "":
                raise RrfFormatError(
                    f"{path}:{lineno}: expected {len(RXNCONSO_COLUMNS)} '|'-terminated columns, "
                    f"got {len(cols) - (cols[-1] == '')}"
                )
            rxcui, lat, sab, tty, name, suppress = cols[0], cols[1], cols[11], cols[12], cols[14], cols[16]
            if lat != language or suppress in SUPPRESSED:
                continue
            if (sab_set is not None and sab not in sab_set) or (tty_set is not None and tty not in tty_set):
                continue
            yield RxAtom(rxcui=rxcui, name=name, tty=tty, sab=sab)


def read_druglist(path: str | os.PathLike) -> Iterator[str]:
    """Yield the names of a plain one-name-per-line drug list (e.g. medExtractR's RxNorm list)."""
    with open_text(path) as fh:
        for line in fh:
            name = line.strip()
            if name:
                yield name


def is_rrf(path: str | os.PathLike) -> bool:
    """True for a file that looks like RXNCONSO.RRF (by name), so a config can take either."""
    name = os.path.basename(os.fspath(path)).upper()
    return name.startswith("RXNCONSO") or name.endswith((".RRF", ".RRF.GZ"))


# --- RxNav REST client ------------------------------------------------------------------------

RXNAV_URL = "https://rxnav.nlm.nih.gov/REST"


class RxNavError(RuntimeError):
    """RxNav could not answer (blocked, persistent server errors, malformed reply)."""


class _Retryable(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RateLimiter:
    """At most ``rate`` calls per second across threads (NLM's published limit is 20/s)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            time.sleep(delay)


class ResponseCache:
    """SQLite key→JSON store: one file, safe across processes, survives a killed run."""

    def __init__(self, path: str | os.PathLike):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(os.fspath(path), check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, body TEXT NOT NULL)")
        self._db.commit()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)", (key, json.dumps(value)))
            self._db.commit()

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class Candidate:
    rxcui: str
    name: str
    score: float
    rank: int
    source: str = ""


class RxNavClient:
    """RxNav lookups: rxcui by name, approximate match, spelling suggestions, related concepts.

    ``base_url`` points at NLM's public server by default, or at a local RxNav-in-a-Box
    installation for on-premise sites.
    """

    def __init__(
        self,
        base_url: str = RXNAV_URL,
        cache_path: str | os.PathLike | None = None,
        rate: float = 20.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        timeout: float = 30.0,
        session: "requests.Session | None" = None,
    ):
        import requests  # imported here: the RRF reader and the lexicon never need HTTP

        self.base_url = base_url.rstrip("/")
        self.cache = ResponseCache(cache_path) if cache_path else None
        self.limiter = RateLimiter(rate)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.session = session or requests.Session()
        self.requests_sent = 0

    # -- transport --------------------------------------------------------------------------
    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``base_url/path`` as JSON, from the cache when possible, retrying transient errors."""
        import requests
        from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        params = {k: v for k, v in (params or {}).items() if v is not None}
        key = json.dumps([self.base_url, path, sorted(params.items())])  # one cache may serve NLM and a local RxNav
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=self.backoff, max=self.max_backoff),
            retry=retry_if_exception(lambda e: isinstance(e, (_Retryable, requests.ConnectionError, requests.Timeout,
                                                              requests.exceptions.ChunkedEncodingError,
                                                              requests.exceptions.ContentDecodingError))),
            reraise=False,
        )
        try:
            body = retrying(self._get_once, path, params)
        except RetryError as e:
            last = e.last_attempt.exception()
            raise RxNavError(
                f"RxNav {self.base_url}/{path} failed after {self.max_attempts} attempts: {last}"
            ) from last
        if self.cache is not None:
            self.cache.put(key, body)
        return body

    def _get_once(self, path: str, params: dict[str, Any]) -> Any:
        self.limiter.wait()
        self.requests_sent += 1
        resp = self.session.get(f"{self.base_url}/{path}", params=params, timeout=self.timeout)
        if resp.status_code == 429 or resp.status_code >= 500:
            retry_after = resp.headers.get("Retry-After")
            if retry_after and retry_after.isdigit():
                time.sleep(min(float(retry_after), self.max_backoff))
            raise _Retryable(resp.status_code, f"HTTP {resp.status_code} from {resp.url}")
        if resp.status_code == 403:
            raise RxNavError(
                f"HTTP 403 from {resp.url}: RxNav refused the request (NLM blocks clients that exceed "
                "20 requests/second; lower the rate or use a local RxNav-in-a-Box via base_url)"
            )
        if resp.status_code != 200:
            raise RxNavError(f"HTTP {resp.status_code} from {resp.url}: {resp.text[:200]}")
        try:
            body = resp.json()
        except ValueError as e:
            raise RxNavError(f"RxNav {resp.url} returned non-JSON: {resp.text[:200]!r}") from e
        if not isinstance(body, dict):  # every RxNav endpoint answers an object
            raise RxNavError(f"RxNav {resp.url} returned {type(body).__name__}, not a JSON object: {resp.text[:200]!r}")
        return body

    # -- API --------------------------------------------------------------------------------
    def rxcui(self, name: str, search: int = 0) -> list[str]:
        """RXCUIs whose name is exactly ``name`` (search=2 also tries normalised matching)."""
        body = self.get_json("rxcui.json", {"name": name, "search": search or None})
        return list((body.get("idGroup") or {}).get("rxnormId") or [])

    def approximate(self, term: str, max_entries: int = 10) -> list[Candidate]:
        """Fuzzy candidates for ``term``, one per RXCUI (best score kept), best first.

        RxNav returns one candidate per atom, so the same concept appears several times.
        """
        body = self.get_json("approximateTerm.json", {"term": term, "maxEntries": max_entries})
        best: dict[str, Candidate] = {}
        for c in (body.get("approximateGroup") or {}).get("candidate") or []:
            cand = Candidate(
                rxcui=str(c["rxcui"]), name=c.get("name", ""), score=float(c.get("score", 0) or 0),
                rank=int(c.get("rank", 0) or 0), source=c.get("source", ""),
            )
            old = best.get(cand.rxcui)
            if old is None or (cand.score, -cand.rank, bool(cand.name)) > (old.score, -old.rank, bool(old.name)):
                best[cand.rxcui] = cand
        return sorted(best.values(), key=lambda c: (-c.score, c.rank))

    def spelling_suggestions(self, name: str) -> list[str]:
        body = self.get_json("spellingsuggestions.json", {"name": name})
        group = body.get("suggestionGroup") or {}
        return list((group.get("suggestionList") or {}).get("suggestion") or [])

    def related(self, rxcui: str, ttys: Iterable[str] = ("IN", "BN")) -> dict[str, list[RxAtom]]:
        """Related concepts by term type, e.g. a brand's ingredients (IN) or an ingredient's brands (BN)."""
        body = self.get_json(f"rxcui/{rxcui}/related.json", {"tty": " ".join(ttys)})
        out: dict[str, list[RxAtom]] = {}
        for group in (body.get("relatedGroup") or {}).get("conceptGroup") or []:
            atoms = [
                RxAtom(rxcui=str(p["rxcui"]), name=p["name"], tty=p.get("tty", group.get("tty", "")))
                for p in group.get("conceptProperties") or []
                if p.get("suppress", "N") not in SUPPRESSED
            ]
            out.setdefault(group.get("tty", ""), []).extend(atoms)
        return out

    def ingredients(self, rxcui: str) -> list[RxAtom]:
        return self.related(rxcui, ("IN",)).get("IN", [])

    def brands(self, rxcui: str) -> list[RxAtom]:
        return self.related(rxcui, ("BN",)).get("BN", [])

    def close(self) -> None:
        self.session.close()
        if self.cache is not None:
            self.cache.close()
