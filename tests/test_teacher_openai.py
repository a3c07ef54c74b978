"""The OpenAI teacher over real HTTP (the openai SDK) against a loopback fake of the API."""
from __future__ import annotations

import json
import logging
import time

import pytest
from typer.testing import CliRunner

from distill.documents import Document
from distill.io.jsonl import read_jsonl, write_jsonl
from teachers import cost
from teachers.base import LabelFailure, label_corpus, read_usage
from teachers.openai import OpenAITeacher
from teachers.registry import ExternalAPIRefused, make_teacher
from tests.fake_llm_servers import FakeOpenAIServer, words

TERMS = {"aspirin": "MEDICATION", "chest pain": "SYMPTOM", "myocardial infarction": "DISEASE", "fever": "SYMPTOM"}
NOTE1 = "The patient had chest pain and was given aspirin. Chest pain resolved; no fever."
NOTE2 = "History of myocardial infarction, on aspirin."


def expected(text: str) -> list[tuple[int, int, str, str]]:
    """Every occurrence of every term, case-insensitively: the offsets a correct teacher gives."""
    out = []
    low = text.lower()
    for term, label in TERMS.items():
        i = low.find(term)
        while i >= 0:
            out.append((i, i + len(term), label, text[i : i + len(term)]))
            i = low.find(term, i + 1)
    return sorted(out)


def as_tuples(spans):
    return sorted((s.start, s.end, s.label, s.text) for s in spans)


@pytest.fixture
def server():
    with FakeOpenAIServer(TERMS) as srv:
        yield srv


@pytest.fixture
def teacher_for(tmp_path):
    def make(srv, **kw):
        kw.setdefault("cache", tmp_path / "cache.sqlite")
        kw.setdefault("backoff_initial", 0.01)
        return OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, **kw)

    return make


DOCS = [Document("d1", NOTE1), Document("d2", NOTE2)]


def test_answer_aligned_to_offsets_with_strict_schema(server, teacher_for):
    t = teacher_for(server)
    results = list(t.label(DOCS))
    for doc, spans in zip(DOCS, results):
        assert not isinstance(spans, LabelFailure)
        assert as_tuples(spans) == expected(doc.text)
        for s in spans:
            assert doc.text[s.start : s.end] == s.text and s.source == "openai:gpt-4o-mini"
    body = server.requests[0]["body"]
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["entities"]["items"]["properties"]["label"]["enum"] == [
        "MEDICATION", "DISEASE", "SYMPTOM"]
    assert t.stats["unaligned"] == 0 and t.usage.requests == 2


def test_429_then_success_honours_retry_after(server, teacher_for):
    server.retry_after = "1"
    server.script = ["429"]
    t = teacher_for(server, concurrency=1)
    t0 = time.perf_counter()
    spans = next(t.label([DOCS[0]]))
    elapsed = time.perf_counter() - t0
    assert as_tuples(spans) == expected(NOTE1)
    assert elapsed >= 0.95, "Retry-After: 1 was not honoured (backoff alone would wait ~0.01 s)"
    assert t.stats["retries"] == 1 and t.usage.requests == 2 and len(server.requests) == 2


def test_500_storm_is_a_clear_per_document_failure(server, teacher_for):
    server.rules = {"STORM": "500"}
    docs = [DOCS[0], Document("bad", "A STORM of errors hides the fever."), DOCS[1]]
    t = teacher_for(server, max_attempts=4)
    results = list(t.label(docs))
    assert as_tuples(results[0]) == expected(NOTE1) and as_tuples(results[2]) == expected(NOTE2)
    failure = results[1]
    assert isinstance(failure, LabelFailure)
    assert "HTTP 500" in failure.reason and "gave up after 4 attempts" in failure.reason
    storm = [r for r in server.requests if "STORM" in r["body"]["messages"][-1]["content"]]
    assert len(storm) == 4


def test_malformed_answer_is_asked_again(server, teacher_for):
    server.script = ["malformed"]
    t = teacher_for(server)
    assert as_tuples(next(t.label([DOCS[0]]))) == expected(NOTE1)
    assert t.stats["malformed"] == 1 and len(server.requests) == 2


def test_always_malformed_ends_in_failure(server, teacher_for):
    server.rules = {"aspirin": "malformed"}
    t = teacher_for(server, parse_attempts=2)
    result = next(t.label([DOCS[1]]))
    assert isinstance(result, LabelFailure) and "malformed answer" in result.reason
    assert len(server.requests) == 2


def test_truncated_answer_retried_with_larger_cap_then_salvaged(server, teacher_for, tmp_path):
    server.script = ["truncated"]
    t = teacher_for(server)
    assert as_tuples(next(t.label([DOCS[0]]))) == expected(NOTE1)
    caps = [r["body"]["max_tokens"] for r in server.requests]
    assert caps[1] == 2 * caps[0] and t.stats["truncated_retried"] == 1
    # With no attempts left, the complete items of a cut-off answer are kept and counted.
    server.rules = {"myocardial": "truncated"}
    t2 = teacher_for(server, parse_attempts=1, cache=tmp_path / "other.sqlite")
    spans = next(t2.label([DOCS[1]]))
    assert as_tuples(spans) == [e for e in expected(NOTE2) if e[3] == "myocardial infarction"]
    assert t2.stats["salvaged_length"] == 1


def test_rerun_is_served_wholly_from_cache(server, teacher_for, tmp_path):
    first = label_corpus(teacher_for(server), DOCS, tmp_path / "a.jsonl", progress=False)
    sent = len(server.requests)
    assert sent == 2 and first.labelled == 2
    t2 = teacher_for(server)
    second = label_corpus(t2, DOCS, tmp_path / "b.jsonl", progress=False)
    assert len(server.requests) == sent, "a rerun must not send any request"
    assert t2.usage.requests == 0 and t2.usage.cached_requests == 2 and t2.usage.dollars == 0
    a = {d.id: as_tuples(d.spans("openai:gpt-4o-mini")) for d in read_jsonl(tmp_path / "a.jsonl")}
    b = {d.id: as_tuples(d.spans("openai:gpt-4o-mini")) for d in read_jsonl(tmp_path / "b.jsonl")}
    assert a == b and second.spans == first.spans


def test_ledger_dollars_equal_tokens_times_price(server, teacher_for, tmp_path):
    t = teacher_for(server)
    label_corpus(t, DOCS, tmp_path / "out.jsonl", progress=False)
    # the server's own token counts, recomputed from what it received and sent
    sent_in = sum(words(json.dumps(r["body"]["messages"])) for r in server.requests)
    assert t.usage.input_tokens == sent_in > 0
    price = cost.price_for("gpt-4o-mini")
    assert (price.input_per_1m, price.output_per_1m) == (0.15, 0.60)
    want = (t.usage.input_tokens * 0.15 + t.usage.output_tokens * 0.60) / 1e6
    assert t.usage.dollars == pytest.approx(want, rel=1e-12)
    assert read_usage(tmp_path / "out.jsonl").dollars == pytest.approx(want, rel=1e-12)


def test_killed_run_resumes_without_resending(server, teacher_for, tmp_path):
    out = tmp_path / "silver.jsonl"
    label_corpus(teacher_for(server, cache=False), DOCS[:1], out, progress=False)  # "killed" after one note
    before = len(server.requests)
    result = label_corpus(teacher_for(server, cache=False), DOCS, out, progress=False)
    assert result.skipped_done == 1 and result.labelled == 1
    assert len(server.requests) == before + 1
    assert NOTE2 in server.requests[-1]["body"]["messages"][-1]["content"]


def test_long_note_chunked_and_merged_without_duplicates(server, teacher_for):
    days = [f"On day {i} the ward was quiet and nurse {i} checked the chart twice. " * 4 for i in range(6)]
    text = "".join(d + "She took aspirin for chest pain. " for d in days) + "No fever."
    t = teacher_for(server, chunk_chars=400, chunk_overlap=120)
    spans = next(t.label([Document("long", text)]))
    assert len(server.requests) > 3
    assert as_tuples(spans) == expected(text)  # every occurrence once, none twice


def test_batch_api_submit_collect_then_label_from_cache(tmp_path):
    with FakeOpenAIServer(TERMS, batch_polls_before_done=1) as srv:
        t = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=tmp_path / "c.sqlite")
        sub = t.submit_batch(DOCS)
        assert sub["requests"] == 2 and sub["batch_id"]
        lines = [json.loads(x) for x in srv.files["file-1"].decode().splitlines()]
        assert {x["url"] for x in lines} == {"/v1/chat/completions"} and lines[0]["body"]["model"] == "gpt-4o-mini"
        assert t.collect_batch(sub["batch_id"], DOCS)["status"] == "in_progress"
        got = t.collect_batch(sub["batch_id"], DOCS)
        assert got["status"] == "completed" and got["stored"] == 2
        chat_before = sum(r["path"] == "/v1/chat/completions" for r in srv.requests)
        results = list(t.label(DOCS))
        assert sum(r["path"] == "/v1/chat/completions" for r in srv.requests) == chat_before == 0
        assert [as_tuples(s) for s in results] == [expected(d.text) for d in DOCS]
        full = cost.dollars("gpt-4o-mini", t.usage.input_tokens, t.usage.output_tokens)
        assert t.usage.dollars == pytest.approx(full / 2) and full > 0
        assert t.submit_batch(DOCS)["requests"] == 0  # everything is cached now


def test_external_api_refused_unless_allowed(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    with pytest.raises(ExternalAPIRefused):
        make_teacher("openai:gpt-4o-mini")
    t = make_teacher("openai:gpt-4o-mini", allow_external=True, cache=False)
    assert t.name == "openai:gpt-4o-mini"
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        make_teacher("openai:gpt-4o-mini", allow_external=True, cache=False)


def test_unknown_remote_model_has_no_made_up_price(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    with pytest.raises(cost.UnknownPrice):
        OpenAITeacher("some-new-model", cache=False)


def test_logs_hold_no_note_text_or_key(server, teacher_for, caplog, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-1234567890")
    server.rules = {"STORM": "500"}
    caplog.set_level(logging.INFO)
    secret_note = "Unique STORM phrase xylophone-patient has chest pain."
    list(teacher_for(server, max_attempts=2).label([Document("p", secret_note), DOCS[0]]))
    assert caplog.records, "expected progress/failure log lines"
    assert "xylophone" not in caplog.text and "chest pain" not in caplog.text
    assert "sk-secret" not in caplog.text


def test_cli_label_end_to_end(server, tmp_path):
    from distill.cli import app

    notes = tmp_path / "notes.jsonl"
    write_jsonl(DOCS, notes)
    out = tmp_path / "silver.jsonl"
    args = ["label", "--teacher", "openai:gpt-4o-mini", "--base-url", server.base_url, "--allow-external",
            "--input", str(notes), "--out", str(out), "--option", f"cache={tmp_path / 'cache.sqlite'}", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    docs = {d.id: d for d in read_jsonl(out)}
    assert as_tuples(docs["d1"].spans("openai:gpt-4o-mini")) == expected(NOTE1)
    assert "dollars" in result.output and "requests" in result.output
    ledger = json.loads((tmp_path / "silver.jsonl.usage.json").read_text())["usage"]
    assert ledger["requests"] == 2 and ledger["dollars"] > 0


def test_cli_batch_submit_then_collect(tmp_path):
    import re

    from distill.cli import app

    notes = tmp_path / "notes.jsonl"
    write_jsonl(DOCS, notes)
    out = tmp_path / "silver.jsonl"
    with FakeOpenAIServer(TERMS) as srv:
        base = ["label", "--teacher", "openai:gpt-4o-mini", "--base-url", srv.base_url, "--input", str(notes),
                "--out", str(out), "--option", f"cache={tmp_path / 'cache.sqlite'}", "--no-progress"]
        sub = CliRunner().invoke(app, base + ["--batch", "submit"])
        assert sub.exit_code == 0, sub.output
        assert not out.exists()
        batch_id = re.search(r"--batch-id (\S+)", sub.output).group(1)
        got = CliRunner().invoke(app, base + ["--batch", "collect", "--batch-id", batch_id])
        assert got.exit_code == 0, got.output
        assert not any(r["path"] == "/v1/chat/completions" for r in srv.requests)
    docs = {d.id: d for d in read_jsonl(out)}
    assert as_tuples(docs["d2"].spans("openai:gpt-4o-mini")) == expected(NOTE2)
    ledger = json.loads((tmp_path / "silver.jsonl.usage.json").read_text())["usage"]
    full = cost.dollars("gpt-4o-mini", ledger["input_tokens"], ledger["output_tokens"])
    assert ledger["requests"] == 2 and ledger["dollars"] == pytest.approx(full / 2) and full > 0


def test_concurrency_is_bounded(server, teacher_for):
    server.delay = 0.2
    docs = [Document(f"n{i}", f"Note {i}: fever treated with aspirin.") for i in range(8)]
    t = teacher_for(server, concurrency=3, cache=False)
    results = list(t.label(docs))
    assert [r[0].text for r in results] == ["fever"] * 8  # in input order
    assert 2 <= server.max_in_flight <= 3


def test_timeouts_are_retried_then_reported(server, teacher_for):
    server.rules = {"SLOW": "hang"}
    server.hang_seconds = 1.5
    t = teacher_for(server, timeout=0.3, max_attempts=2, cache=False)
    results = list(t.label([Document("slow", "SLOW note with fever."), DOCS[1]]))
    assert isinstance(results[0], LabelFailure) and "Timeout" in results[0].reason
    assert "gave up after 2 attempts" in results[0].reason
    assert as_tuples(results[1]) == expected(NOTE2)


def test_price_table_is_dated_sourced_and_matches_snapshots():
    for model, (i, o) in {"gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60), "o1-mini": (3.00, 12.00),
                          "gemini-2.0-flash": (0.10, 0.40)}.items():
        p = cost.price_for(model)
        assert (p.input_per_1m, p.output_per_1m) == (i, o) and p.source.startswith("https://") and p.effective[:2] == "20"
    assert cost.price_for("gpt-4o-mini-2024-07-18").model == "gpt-4o-mini"  # not billed as gpt-4o
    assert cost.price_for("openai:gpt-4o-2024-08-06").model == "gpt-4o"
    assert cost.dollars("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.50)
    assert cost.dollars("gpt-4o", 1_000_000, 1_000_000, batch=True) == pytest.approx(6.25)
    assert cost.price_for("local:anything").input_per_1m == 0
