"""The Gemini teacher over real HTTP (google-genai SDK) against a loopback generateContent fake."""
from __future__ import annotations

import time

import pytest

from distill.documents import Document
from teachers import cost
from teachers.base import LabelFailure, label_corpus
from teachers.gemini import GeminiTeacher
from teachers.registry import ExternalAPIRefused, make_teacher
from tests.fake_llm_servers import FakeGeminiServer, words
from tests.test_teacher_openai import DOCS, NOTE1, NOTE2, TERMS, as_tuples, expected


@pytest.fixture
def server():
    with FakeGeminiServer(TERMS) as srv:
        yield srv


@pytest.fixture
def teacher_for(tmp_path):
    def make(srv, **kw):
        kw.setdefault("cache", tmp_path / "cache.sqlite")
        kw.setdefault("backoff_initial", 0.01)
        return GeminiTeacher("gemini-2.0-flash", base_url=srv.base_url, **kw)

    return make


def test_answer_aligned_with_json_schema_request(server, teacher_for):
    t = teacher_for(server)
    results = list(t.label(DOCS))
    assert [as_tuples(s) for s in results] == [expected(d.text) for d in DOCS]
    req = server.requests[0]
    assert req["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"
    cfg = req["body"]["generationConfig"]
    assert cfg["responseMimeType"] == "application/json" and cfg["temperature"] == 0
    assert "entities" in str(cfg["responseSchema"]) and cfg["maxOutputTokens"] > 0
    assert "Entity types" in req["body"]["systemInstruction"]["parts"][0]["text"]


def test_429_then_success_honours_retry_after(server, teacher_for):
    server.retry_after = "1"
    server.script = ["429"]
    t = teacher_for(server, concurrency=1)
    t0 = time.perf_counter()
    assert as_tuples(next(t.label([DOCS[0]]))) == expected(NOTE1)
    assert time.perf_counter() - t0 >= 0.95
    assert t.stats["retries"] == 1 and len(server.requests) == 2


def test_500_storm_is_a_clear_per_document_failure(server, teacher_for):
    server.rules = {"STORM": "500"}
    docs = [Document("bad", "STORM: fever everywhere."), DOCS[1]]
    results = list(teacher_for(server, max_attempts=3).label(docs))
    assert isinstance(results[0], LabelFailure) and "HTTP 500" in results[0].reason
    assert "gave up after 3 attempts" in results[0].reason
    assert as_tuples(results[1]) == expected(NOTE2)


def test_malformed_then_truncated_then_valid(server, teacher_for):
    server.script = ["malformed", "truncated"]
    t = teacher_for(server)
    assert as_tuples(next(t.label([DOCS[0]]))) == expected(NOTE1)
    caps = [r["body"]["generationConfig"]["maxOutputTokens"] for r in server.requests]
    assert len(caps) == 3 and caps[2] == 2 * caps[1]  # MAX_TOKENS -> asked again with a larger cap
    assert t.stats["malformed"] == 1 and t.stats["truncated_retried"] == 1


def test_always_malformed_ends_in_failure(server, teacher_for):
    server.rules = {"aspirin": "malformed"}
    result = next(teacher_for(server).label([DOCS[1]]))
    assert isinstance(result, LabelFailure) and "malformed" in result.reason


def test_rerun_served_from_cache_and_ledger_matches_price(server, teacher_for, tmp_path):
    t = teacher_for(server)
    label_corpus(t, DOCS, tmp_path / "a.jsonl", progress=False)
    n = len(server.requests)
    sent_out = t.usage.output_tokens
    assert t.usage.input_tokens == sum(
        words(r["body"]["systemInstruction"]["parts"][0]["text"]) + sum(words(p["text"]) for c in r["body"]["contents"] for p in c["parts"])
        for r in server.requests
    )
    assert t.usage.dollars == pytest.approx((t.usage.input_tokens * 0.10 + sent_out * 0.40) / 1e6, rel=1e-12)
    assert t.usage.dollars == pytest.approx(cost.dollars("gemini-2.0-flash", t.usage.input_tokens, sent_out))
    t2 = teacher_for(server)
    label_corpus(t2, DOCS, tmp_path / "b.jsonl", progress=False)
    assert len(server.requests) == n and t2.usage.requests == 0 and t2.usage.cached_requests == 2


def test_compact_format_without_schema(server, teacher_for):
    t = teacher_for(server, prompts=None, fmt="compact")
    assert as_tuples(next(t.label([DOCS[0]]))) == expected(NOTE1)
    assert "responseSchema" not in server.requests[0]["body"]["generationConfig"]


def test_key_from_environment_only_and_external_refused(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ExternalAPIRefused):
        make_teacher("gemini:gemini-2.0-flash")
    with pytest.raises(ValueError, match="GEMINI_API_KEY"):
        make_teacher("gemini:gemini-2.0-flash", allow_external=True, cache=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "not-a-real-key")
    assert make_teacher("gemini:gemini-2.0-flash", allow_external=True, cache=False).name == "gemini:gemini-2.0-flash"
