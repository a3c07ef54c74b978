"""Gemini teacher: ``generateContent`` with a JSON response schema, through ``google-genai``.

The key comes from GEMINI_API_KEY or GOOGLE_API_KEY; ``base_url`` (``http_options``) points
the SDK at another endpoint — a proxy, or the loopback fake server the tests use. The SDK's
own retries stay off (no ``retry_options``): :mod:`teachers.llm` retries, honouring
Retry-After.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

from google import genai
from google.genai import errors, types

from teachers.cache import CachedResponse
from teachers.llm import (
    LLMTeacher, PermanentError, TransientError, build_prompts, default_price, is_loopback, non_json_answer,
    parse_retry_after,
)
from teachers.prompts import Prompt


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI-style JSON schema -> Gemini's OpenAPI subset (no ``additionalProperties``)."""
    out = {k: v for k, v in schema.items() if k != "additionalProperties"}
    if "properties" in out:
        out["properties"] = {k: gemini_schema(v) for k, v in out["properties"].items()}
    if "items" in out:
        out["items"] = gemini_schema(out["items"])
    return out


def retry_info_delay(details: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` in an error body (``"retryDelay": "37s"``):
    Gemini's 429 says there, not in a header, how long the quota window lasts."""
    if isinstance(details, list) and len(details) == 1:
        details = details[0]
    err = details.get("error") if isinstance(details, dict) else None
    for item in (err.get("details") if isinstance(err, dict) else None) or []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            delay = item.get("retryDelay")
            m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)s\s*", delay) if isinstance(delay, str) else None
            if m:
                return float(m.group(1))
    return None


class GeminiTeacher(LLMTeacher):
    family = "gemini"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, **options: Any):
        self.base_url = base_url or None
        key = api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        if not key:
            if not is_loopback(self.base_url):
                raise ValueError("GEMINI_API_KEY (or GOOGLE_API_KEY) is not set (keys are read from the environment only)")
            key = "no-key-needed-for-a-local-server"
        options.setdefault("price", default_price(model, self.base_url))
        super().__init__(model, **options)
        self.timeout = float(timeout)
        http = types.HttpOptions(base_url=self.base_url, api_version="v1beta", timeout=int(self.timeout * 1000))
        self.client = genai.Client(api_key=key, http_options=http)

    def fingerprint_fields(self) -> dict[str, Any]:
        return {"family": self.family, "model": self.model, "base_url": self.base_url, "temperature": 0}

    def _config(self, prompt: Prompt, max_tokens: int) -> types.GenerateContentConfig:
        kwargs: dict[str, Any] = {"system_instruction": prompt.system, "temperature": 0, "max_output_tokens": max_tokens}
        if prompt.fmt == "json":
            kwargs["response_mime_type"] = "application/json"
            kwargs["response_schema"] = gemini_schema(self.prompts.schema())
        return types.GenerateContentConfig(**kwargs)

    def _request(self, prompt: Prompt, max_tokens: int) -> CachedResponse:
        contents = [
            types.Content(role="model" if m["role"] == "assistant" else "user", parts=[types.Part(text=m["content"])])
            for m in prompt.chat_without_system()
        ]
        try:
            r = self.client.models.generate_content(model=self.model, contents=contents, config=self._config(prompt, max_tokens))
        except errors.APIError as e:
            msg = f"HTTP {e.code} from {self.name}: {(e.message or e.status or '')[:300]}"
            if e.code in (408, 429) or (e.code or 0) >= 500:
                headers = getattr(getattr(e, "response", None), "headers", None)
                after = parse_retry_after(headers)
                raise TransientError(msg, after if after is not None else retry_info_delay(e.details)) from None
            raise PermanentError(msg) from None
        except json.JSONDecodeError as e:  # a 200 that is not JSON (a proxy's HTML page, a cut-off body)
            raise non_json_answer(self.base_url or "the Gemini API", e.doc) from None
        except Exception as e:  # the SDK's HTTP layer (httpx) raises its own timeout/connection errors
            if type(e).__module__.split(".")[0].startswith("httpx"):
                raise TransientError(f"{type(e).__name__} talking to {self.name}") from None
            raise
        feedback = getattr(r, "prompt_feedback", None)
        blocked = getattr(feedback, "block_reason", None)
        if blocked and not r.candidates:  # the prompt itself was refused: asking again gives the same
            reason = getattr(blocked, "name", None) or str(blocked)
            detail = getattr(feedback, "block_reason_message", None)
            raise PermanentError(f"prompt blocked: {reason}" + (f" ({detail})" if detail else ""))
        cand = (r.candidates or [None])[0]
        finish = getattr(getattr(cand, "finish_reason", None), "name", None) or "STOP"
        if finish in ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "RECITATION"):
            raise PermanentError(f"{self.name} blocked the answer ({finish})")
        meta = r.usage_metadata
        return CachedResponse(
            content=r.text or "",
            input_tokens=int(getattr(meta, "prompt_token_count", 0) or 0),
            output_tokens=int(getattr(meta, "candidates_token_count", 0) or 0),
            finish_reason="length" if finish == "MAX_TOKENS" else finish.lower(),
        )


def from_spec(name: str, **options: Any) -> GeminiTeacher:
    """``gemini:<model>``; options as for the OpenAI teacher."""
    if not name:
        raise ValueError("gemini teacher needs a model name, e.g. gemini:gemini-2.0-flash")
    return GeminiTeacher(name, **build_prompts(options))
