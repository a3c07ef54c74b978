"""Loopback fakes of the OpenAI and Gemini HTTP APIs, for testing the real SDKs end to end.

Each server listens on 127.0.0.1 (a free port), speaks the real wire format (OpenAI
``/v1/chat/completions``, ``/v1/files``, ``/v1/batches``; Gemini
``/v1beta/models/{model}:generateContent``), and answers like a perfect annotator that knows a
fixed term list: every term found inside the request's ``<note>…</note>`` is returned with its
label. Faults are scripted: ``script`` is consumed one entry per request, ``rules`` map a
substring of the note to a fault on every request. Faults: ``429`` (with Retry-After),
``500``, ``malformed`` (prose instead of JSON), ``truncated`` (JSON cut off, finish reason
length), ``hang`` (OpenAI only: no answer for ``hang_seconds``, then the connection closes). Token counts are whitespace words, so a test can recompute the ledger exactly.
"""
from __future__ import annotations

import email.parser
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NOTE = re.compile(r"<note>\n(.*)\n</note>", re.S)


class FakeLLMServer:
    """Shared machinery: the HTTP server thread, the request log, faults, the oracle."""

    def __init__(self, terms: dict[str, str] | None = None, retry_after: str = "0"):
        self.terms = dict(terms or {})
        self.script: list[str] = []
        self.rules: dict[str, str] = {}
        self.retry_after = retry_after
        self.requests: list[dict[str, Any]] = []
        self.delay = 0.0  # seconds every answer takes (to observe concurrency)
        self.hang_seconds = 3.0  # how long the ``hang`` fault stalls (to trigger client timeouts)
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer._dispatch(self, "POST", body)

            def do_GET(self) -> None:
                outer._dispatch(self, "GET", b"")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> "FakeLLMServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- helpers --------------------------------------------------------------------------
    def entities_in(self, note: str) -> list[dict[str, str]]:
        found = []
        for term, label in self.terms.items():
            i = note.find(term)
            if i >= 0:
                found.append((i, {"text": term, "label": label}))
        return [e for _, e in sorted(found, key=lambda x: x[0])]

    def fault_for(self, note: str) -> str | None:
        for marker, fault in self.rules.items():
            if marker in note:
                return fault
        with self._lock:
            return self.script.pop(0) if self.script else None

    def _record(self, path: str, payload: Any) -> None:
        with self._lock:
            self.requests.append({"path": path, "body": payload})

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            status, payload, headers = self.route(method, h.path, body, dict(h.headers))
        except Exception as e:  # a bug in the fake must show up as a clear 500 in the test
            status, payload, headers = 500, {"error": {"message": f"fake server bug: {e!r}"}}, {}
        finally:
            with self._lock:
                self.in_flight -= 1
        if status == 0:  # the "hang" fault: the client has given up; answer nothing
            return
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json" if not isinstance(payload, bytes) else "application/octet-stream")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def route(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError


def words(text: str) -> int:
    return len(text.split())


class FakeOpenAIServer(FakeLLMServer):
    """OpenAI chat completions (strict json_schema or plain text), files and batches."""

    def __init__(self, *args: Any, batch_polls_before_done: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls_before_done = batch_polls_before_done

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def route(self, method: str, path: str, body: bytes, headers: dict[str, str]):
        if method == "POST" and path == "/v1/chat/completions":
            req = json.loads(body)
            self._record(path, req)
            return self.chat(req)
        if method == "POST" and path == "/v1/files":
            return self.upload(body, headers)
        if method == "POST" and path == "/v1/batches":
            req = json.loads(body)
            self._record(path, req)
            return self.create_batch(req)
        m = re.fullmatch(r"/v1/batches/([\w-]+)", path)
        if method == "GET" and m:
            return self.poll_batch(m.group(1))
        m = re.fullmatch(r"/v1/files/([\w-]+)/content", path)
        if method == "GET" and m and m.group(1) in self.files:
            return 200, self.files[m.group(1)], {}
        return 404, {"error": {"message": f"no route {method} {path}", "type": "invalid_request_error"}}, {}

    def chat(self, req: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if not req.get("model") or not isinstance(req.get("messages"), list):
            return 400, {"error": {"message": "model and messages are required", "type": "invalid_request_error"}}, {}
        fmt = req.get("response_format") or {}
        if fmt.get("type") == "json_schema" and not _strict_ok(fmt["json_schema"]["schema"]):
            return 400, {"error": {"message": "Invalid schema for response_format: strict mode needs every "
                                   "property required and additionalProperties false", "type": "invalid_request_error"}}, {}
        user = req["messages"][-1]["content"]
        m = NOTE.search(user)
        note = m.group(1) if m else user
        fault = self.fault_for(note)
        if fault == "hang":
            time.sleep(self.hang_seconds)
            return 0, b"", {}
        if fault == "429":
            return 429, {"error": {"message": "Rate limit reached for requests", "type": "requests",
                                   "code": "rate_limit_exceeded"}}, {"Retry-After": self.retry_after}
        if fault == "500":
            return 500, {"error": {"message": "The server had an error while processing your request.",
                                   "type": "server_error"}}, {}
        ents = self.entities_in(note)
        if fmt.get("type") == "json_schema":
            content = json.dumps({"entities": ents})
        else:
            content = "\n".join(f"{e['label']}: {e['text']}" for e in ents) or "NONE"
        finish = "stop"
        if fault == "malformed":
            content = "Sure! The note mentions " + ", ".join(e["text"] for e in ents) + "."
        elif fault == "truncated":
            content, finish = content[: max(1, len(content) * 2 // 3)], "length"
        prompt_tokens = words(json.dumps(req["messages"]))
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": words(content),
                      "total_tokens": prompt_tokens + words(content)},
        }, {}

    def upload(self, body: bytes, headers: dict[str, str]):
        ctype = next(v for k, v in headers.items() if k.lower() == "content-type")
        msg = email.parser.BytesParser().parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
        parts = {p.get_param("name", header="content-disposition"): p for p in msg.get_payload()}
        content = parts["file"].get_payload(decode=True)
        purpose = parts["purpose"].get_payload(decode=True).decode()
        fid = f"file-{len(self.files) + 1}"
        self.files[fid] = content
        self._record("/v1/files", {"purpose": purpose, "bytes": len(content)})
        return 200, _file_obj(fid, len(content), purpose), {}

    def create_batch(self, req: dict[str, Any]):
        lines = [json.loads(x) for x in self.files[req["input_file_id"]].decode().splitlines() if x.strip()]
        out = []
        for i, line in enumerate(lines):
            assert line["url"] == req["endpoint"] == "/v1/chat/completions" and line["method"] == "POST"
            status, payload, _ = self.chat(line["body"])
            out.append({"id": f"batch_req_{i}", "custom_id": line["custom_id"],
                        "response": {"status_code": status, "request_id": f"req_{i}", "body": payload}, "error": None})
        out_id = f"file-{len(self.files) + 1}"
        self.files[out_id] = "".join(json.dumps(o) + "\n" for o in out).encode()
        bid = f"batch_{len(self.batches) + 1}"
        self.batches[bid] = {
            "id": bid, "object": "batch", "endpoint": req["endpoint"], "errors": None,
            "input_file_id": req["input_file_id"], "completion_window": req["completion_window"],
            "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": int(time.time()), "metadata": req.get("metadata"),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "_output": out_id, "_polls": 0,
        }
        return 200, _public(self.batches[bid]), {}

    def poll_batch(self, bid: str):
        b = self.batches[bid]
        b["_polls"] += 1
        if b["_polls"] > self.batch_polls_before_done:
            total = b["request_counts"]["total"]
            b.update(status="completed", output_file_id=b["_output"], request_counts={"total": total, "completed": total, "failed": 0})
        else:
            b["status"] = "in_progress"
        return 200, _public(b), {}


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _file_obj(fid: str, n: int, purpose: str) -> dict[str, Any]:
    return {"id": fid, "object": "file", "bytes": n, "created_at": int(time.time()),
            "filename": "batch.jsonl", "purpose": purpose, "status": "processed"}


def _strict_ok(schema: Any) -> bool:
    """OpenAI strict mode: every object closed and every property required, recursively."""
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object":
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False or set(schema.get("required", [])) != set(props):
            return False
        return all(_strict_ok(v) for v in props.values())
    if schema.get("type") == "array":
        return _strict_ok(schema.get("items"))
    return True


class FakeGeminiServer(FakeLLMServer):
    """Gemini API ``models/{model}:generateContent`` (v1beta), JSON or text answers."""

    @property
    def base_url(self) -> str:
        return self.root

    def route(self, method: str, path: str, body: bytes, headers: dict[str, str]):
        m = re.fullmatch(r"/v1beta/models/([\w.\-]+):generateContent", path.split("?")[0])
        if method != "POST" or not m:
            return 404, {"error": {"code": 404, "message": f"no route {method} {path}", "status": "NOT_FOUND"}}, {}
        req = json.loads(body)
        self._record(path, req)
        if not any(k.lower() == "x-goog-api-key" for k in headers):
            return 401, {"error": {"code": 401, "message": "API key missing", "status": "UNAUTHENTICATED"}}, {}
        cfg = req.get("generationConfig") or {}
        if "additionalProperties" in json.dumps(cfg.get("responseSchema") or {}):
            return 400, {"error": {"code": 400, "message": "Invalid JSON payload received. Unknown name "
                                   "\"additionalProperties\"", "status": "INVALID_ARGUMENT"}}, {}
        contents = req.get("contents") or []
        user = "".join(p.get("text", "") for p in contents[-1]["parts"]) if contents else ""
        mt = NOTE.search(user)
        note = mt.group(1) if mt else user
        fault = self.fault_for(note)
        if fault == "429":
            return 429, {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                                   "status": "RESOURCE_EXHAUSTED"}}, {"Retry-After": self.retry_after}
        if fault == "500":
            return 500, {"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}}, {}
        ents = self.entities_in(note)
        if cfg.get("responseMimeType") == "application/json":
            text = json.dumps({"entities": ents})
        else:
            text = "\n".join(f"{e['label']}: {e['text']}" for e in ents) or "NONE"
        finish = "STOP"
        if fault == "malformed":
            text = "Here is what I found: " + "; ".join(e["text"] for e in ents)
        elif fault == "truncated":
            text, finish = text[: max(1, len(text) * 2 // 3)], "MAX_TOKENS"
        sys_text = "".join(p.get("text", "") for p in (req.get("systemInstruction") or {}).get("parts", []))
        prompt_tokens = words(sys_text) + sum(words(p.get("text", "")) for c in contents for p in c["parts"])
        return 200, {
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": finish, "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": words(text),
                              "totalTokenCount": prompt_tokens + words(text)},
            "modelVersion": m.group(1),
        }, {}
