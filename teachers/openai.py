"""OpenAI teacher: chat completions with a strict JSON schema, through the ``openai`` SDK.

``base_url`` points the same teacher at any OpenAI-compatible server (vLLM, llama.cpp
server, Ollama); a loopback server needs no key and costs nothing unless its model name is in
the price table. For large jobs the Batch API halves the price: :meth:`submit_batch` uploads
every uncached request as a batch file, :meth:`collect_batch` downloads the answers into the
cache, and a normal :meth:`label` run then reads them from there without a single request.
The SDK's own retries are off: :mod:`teachers.llm` retries, honouring Retry-After.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Iterable, Iterator

import openai

from distill.documents import Document, Span
from teachers.align import chunk_text
from teachers.base import Usage
from teachers.cache import CachedResponse
from teachers.llm import (
    LLMTeacher, PermanentError, TransientError, build_prompts, default_price, is_loopback, non_json_answer,
    parse_retry_after, usable_cached,
)
from teachers.prompts import Prompt

REASONING_PREFIXES = ("o1", "o3", "o4")


class OpenAITeacher(LLMTeacher):
    family = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, **options: Any):
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if not is_loopback(self.base_url):
                raise ValueError("OPENAI_API_KEY is not set (keys are read from the environment only)")
            key = "no-key-needed-for-a-local-server"
        options.setdefault("price", default_price(model, self.base_url))
        super().__init__(model, **options)
        self.timeout = float(timeout)
        self.client = openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout)
        self._collected = Usage()  # batch answers fetched but not yet used by label()
        self._billed: set[tuple[str, str]] = set()  # (batch, custom_id) already on the ledger

    def label(self, docs: Iterable[Document]) -> Iterator[list[Span]]:
        # Bill collected batch answers to the labelling run that uses them, so the ledger
        # written beside its output includes the batch cost.
        self.usage.add(self._collected)
        self._collected = Usage()
        yield from super().label(docs)

    def fingerprint_fields(self) -> dict[str, Any]:
        return {"family": self.family, "model": self.model, "base_url": self.base_url, "temperature": 0}

    @property
    def reasoning(self) -> bool:
        return self.model.startswith(REASONING_PREFIXES)

    def request_body(self, prompt: Prompt, max_tokens: int) -> dict[str, Any]:
        """The chat-completions body (also one line of a Batch API file)."""
        body: dict[str, Any] = {"model": self.model, "messages": prompt.messages}
        if self.reasoning:
            # o1-mini takes no system role, no temperature and no structured output; its hidden
            # reasoning tokens count against the cap, so the cap is the model's, not the chunk's.
            body["messages"] = [{"role": "user", "content": prompt.system}] + prompt.chat_without_system()
            body["max_completion_tokens"] = self.max_output_tokens
            return body
        body["temperature"] = 0
        body["max_tokens"] = max_tokens
        if prompt.fmt == "json":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "entities", "strict": True, "schema": self.prompts.schema()},
            }
        return body

    def _request(self, prompt: Prompt, max_tokens: int) -> CachedResponse:
        try:
            r = self.client.chat.completions.create(**self.request_body(prompt, max_tokens))
        except openai.APIStatusError as e:
            msg = f"HTTP {e.status_code} from {self.name}: {_short(e)}"
            if getattr(e, "code", None) == "insufficient_quota":  # a 429 that waiting cannot fix
                raise PermanentError(f"HTTP 429 insufficient_quota from {self.name}: the account's quota is used up; "
                                     f"check the plan and billing, then rerun ({_short(e)})") from None
            if e.status_code in (408, 409, 429) or e.status_code >= 500:
                raise TransientError(msg, parse_retry_after(e.response.headers)) from None
            raise PermanentError(msg) from None
        except openai.APIConnectionError as e:  # includes timeouts
            raise TransientError(f"{type(e).__name__} talking to {self.name}") from None
        except json.JSONDecodeError as e:  # a 200 declared as JSON that is not (a proxy's page)
            raise non_json_answer(self.client.base_url, e.doc) from None
        if not hasattr(r, "model_dump"):  # a 200 that is not JSON at all: the SDK hands back the text
            raise non_json_answer(self.client.base_url, r)
        return _from_completion(r.model_dump())

    # -- Batch API ----------------------------------------------------------------------
    def _chunk_prompts(self, docs: Iterable[Document], include_cached: bool = False) -> dict[str, Prompt]:
        """custom_id -> prompt for every chunk not answered in the cache yet (every chunk
        with ``include_cached``: collecting must recognise answers it stored before)."""
        from teachers.cache import text_hash

        out: dict[str, Prompt] = {}
        for doc in docs:
            if not doc.text.strip():
                continue
            for a, b in chunk_text(doc.text, self.chunk_chars, self.chunk_overlap):
                prompt = self.prompts.build(doc.text[a:b], doc_id=doc.id)
                if not include_cached and self._cached(prompt):
                    continue
                out[text_hash(prompt.request_text())[:40]] = prompt
        return out

    def _cached(self, prompt: Prompt) -> bool:
        return self.cache is not None and usable_cached(self.cache.get(self.fingerprint, prompt.version, prompt.request_text()))

    def write_batch_file(self, docs: Iterable[Document], path: str | os.PathLike) -> int:
        """Write the Batch API input JSONL for every uncached chunk; returns the request count."""
        prompts = self._chunk_prompts(docs)
        with open(path, "w", encoding="utf-8") as fh:
            for cid, prompt in prompts.items():
                body = self.request_body(prompt, self.output_cap(_note_text(prompt)))
                fh.write(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n")
        return len(prompts)

    def submit_batch(self, docs: Iterable[Document]) -> dict[str, Any]:
        """Upload and start a batch; returns ``{"batch_id", "requests", "status"}``."""
        if self.cache is None:
            raise PermanentError("the Batch API needs the cache: answers are collected into it")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "batch.jsonl")
            n = self.write_batch_file(docs, path)
            if n == 0:
                return {"batch_id": None, "requests": 0, "status": "nothing to send: every chunk is cached"}
            try:
                with open(path, "rb") as fh:
                    uploaded = self.client.files.create(file=fh, purpose="batch")
                batch = self.client.batches.create(
                    input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                    metadata={"teacher": self.name},
                )
            except openai.APIError as e:
                raise PermanentError(f"batch submission failed: {_short(e)}") from None
        return {"batch_id": batch.id, "requests": n, "status": batch.status}

    def collect_batch(self, batch_id: str, docs: Iterable[Document]) -> dict[str, Any]:
        """Fetch a finished batch's answers into the cache (billed at the batch price).

        Returns the batch status and counts; until it is ``completed`` nothing is stored.
        Requests the batch could not answer stay uncached, so the next :meth:`label` run
        sends them individually (or reports them as failures); so do answers that did not
        finish (``cut_off``: e.g. cut by the output cap), which are billed but not stored.
        Collecting a batch again counts its stored answers as ``already_stored``, unbilled
        (a cut-off answer is billed once per teacher object, but again by a new process).
        """
        try:
            batch = self.client.batches.retrieve(batch_id)
        except openai.APIError as e:
            raise PermanentError(f"batch {batch_id}: {_short(e)}") from None
        result: dict[str, Any] = {"batch_id": batch_id, "status": batch.status, "stored": 0, "already_stored": 0,
                                  "cut_off": 0, "errors": 0}
        if batch.status != "completed" or not batch.output_file_id:
            return result
        prompts = self._chunk_prompts(docs, include_cached=True)
        text = self.client.files.content(batch.output_file_id).text
        for line in text.splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            prompt = prompts.get(rec.get("custom_id", ""))
            response = rec.get("response") or {}
            if prompt is None or response.get("status_code") != 200:
                result["errors"] += 1
                continue
            if self._cached(prompt):
                result["already_stored"] += 1
                continue
            try:
                resp = _from_completion(response["body"], batch=True)
            except PermanentError:  # a refusal: left uncached, reported by the labelling run
                result["errors"] += 1
                continue
            if (batch_id, rec["custom_id"]) not in self._billed:
                self._billed.add((batch_id, rec["custom_id"]))
                self._collected.add(Usage(requests=1, input_tokens=resp.input_tokens, output_tokens=resp.output_tokens,
                                          dollars=self.price.dollars(resp.input_tokens, resp.output_tokens, batch=True)))
            if resp.finish_reason != "stop":  # incomplete: the labelling run asks again
                result["cut_off"] += 1
                continue
            self.cache.put(self.fingerprint, prompt.version, prompt.request_text(), resp)
            result["stored"] += 1
        return result


def _note_text(prompt: Prompt) -> str:
    last = prompt.messages[-1]["content"]
    return last[last.find("<note>") + 7 : last.rfind("</note>")]


def _from_completion(body: dict[str, Any], batch: bool = False) -> CachedResponse:
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    if message.get("refusal"):
        raise PermanentError("the model refused to answer")
    usage = body.get("usage") or {}
    return CachedResponse(
        content=message.get("content") or "",
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=choice.get("finish_reason") or "stop",
        batch=batch,
    )


def _short(e: Exception) -> str:
    msg = getattr(e, "message", None) or str(e)
    return msg[:300]


def from_spec(name: str, **options: Any) -> OpenAITeacher:
    """``openai:<model>``; options: base_url, timeout, fmt, concurrency, cache, chunk_chars, …"""
    if not name:
        raise ValueError("openai teacher needs a model name, e.g. openai:gpt-4o-mini")
    options = build_prompts(options)
    return OpenAITeacher(name, **options)
