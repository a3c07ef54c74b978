"""A loopback stand-in for NLM's RxNav REST API, serving its real JSON shapes over real HTTP.

Tests point ``RxNavClient(base_url=server.url)`` at it. It can be told to answer the next
requests with error statuses (429, 5xx, 403), and it records every request it sees with a
timestamp, so tests can check retries, the rate limit and cache hits from the server's side.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

# A few real RxNorm concepts (rxcui, name, tty) and their ingredient/brand links.
CONCEPTS = {
    "5640": ("ibuprofen", "IN"),
    "161": ("acetaminophen", "IN"),
    "1191": ("aspirin", "IN"),
    "153010": ("Advil", "BN"),
    "202433": ("Tylenol", "BN"),
    "215568": ("Bayer Aspirin", "BN"),
}
RELATED = {"5640": ["153010"], "153010": ["5640"], "161": ["202433"], "202433": ["161"], "1191": ["215568"], "215568": ["1191"]}
# Atoms from several sources: approximateTerm returns one candidate per atom (hence duplicates).
ATOMS = [
    ("5640", "ibuprofen", "RXNORM"), ("5640", "Ibuprofen", "MMSL"), ("5640", "IBUPROFEN", "VANDF"),
    ("153010", "Advil", "RXNORM"), ("161", "acetaminophen", "RXNORM"), ("161", "Acetaminophen", "GS"),
    ("202433", "Tylenol", "RXNORM"), ("1191", "aspirin", "RXNORM"), ("215568", "Bayer Aspirin", "RXNORM"),
]


def _similarity(a: str, b: str) -> float:
    a, b = a.lower(), b.lower()
    common = sum(1 for x, y in zip(a, b) if x == y)
    return round(10.0 * common / max(len(a), len(b)), 2)


class FakeRxNav:
    """``with FakeRxNav() as srv: ... srv.url ... srv.requests``."""

    def __init__(self) -> None:
        self.requests: list[tuple[float, str]] = []
        self.faults: deque[int | str] = deque()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                with fake._lock:
                    fake.requests.append((time.monotonic(), self.path))
                    fault = fake.faults.popleft() if fake.faults else None
                if fault == "truncated":  # the connection drops mid-body
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b'{"idGroup": {"name"')
                    self.close_connection = True
                    return
                if fault == "null":
                    self._send(200, None)
                    return
                if fault is not None:
                    body = {"error": f"injected {fault}"}
                    self._send(fault, body, {"Retry-After": "0"} if fault == 429 else {})
                    return
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                status, body = fake.route(url.path, q)
                self._send(status, body)

            def _send(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/REST"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def fail_next(self, *statuses: int | str) -> None:
        """Answer the next ``len(statuses)`` requests with these HTTP statuses, or ``"truncated"``
        (a body cut off mid-way) or ``"null"`` (HTTP 200 with a JSON ``null``)."""
        with self._lock:
            self.faults.extend(statuses)

    def route(self, path: str, q: dict[str, str]) -> tuple[int, dict]:
        if path == "/REST/rxcui.json":
            name = q.get("name", "")
            ids = [c for c, (n, _t) in CONCEPTS.items() if n.lower() == name.lower()]
            group = {"name": name}
            if ids:
                group["rxnormId"] = ids
            return 200, {"idGroup": group}
        if path == "/REST/approximateTerm.json":
            term = q.get("term", "")
            scored = sorted(((_similarity(term, n), c, n, s) for c, n, s in ATOMS), reverse=True)
            scored = [x for x in scored if x[0] > 3][: int(q.get("maxEntries", 20))]
            cands = [
                {"rxcui": c, "rxaui": str(9000 + i), "score": str(sc), "rank": str(i + 1), "name": n, "source": s}
                for i, (sc, c, n, s) in enumerate(scored)
            ]
            group = {"inputTerm": term, "comment": ""}
            if cands:
                group["candidate"] = cands
            return 200, {"approximateGroup": group}
        if path == "/REST/spellingsuggestions.json":
            name = q.get("name", "")
            sugg = [n for n, _t in CONCEPTS.values() if _similarity(name, n) >= 6 and n.lower() != name.lower()]
            group = {"name": name, "suggestionList": {"suggestion": sugg} if sugg else None}
            return 200, {"suggestionGroup": group}
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["REST", "rxcui"] and parts[3] == "related.json":
            rxcui = parts[2]
            if rxcui not in CONCEPTS:
                return 200, {"relatedGroup": {"rxcui": rxcui, "termType": []}}
            ttys = q.get("tty", "").split()
            groups = []
            for tty in ttys:
                props = [
                    {"rxcui": r, "name": CONCEPTS[r][0], "synonym": "", "tty": tty, "language": "ENG",
                     "suppress": "N", "umlscui": ""}
                    for r in RELATED.get(rxcui, []) if CONCEPTS[r][1] == tty
                ]
                groups.append({"tty": tty, "conceptProperties": props} if props else {"tty": tty})
            return 200, {"relatedGroup": {"rxcui": rxcui, "termType": ttys, "conceptGroup": groups}}
        return 404, {"error": f"no route {path}"}

    def __enter__(self) -> "FakeRxNav":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
