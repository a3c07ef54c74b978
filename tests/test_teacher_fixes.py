"""Regression tests for reviewed teacher bugs: output caps, caching of cut-off answers, batch
collection, loopback detection, JSON salvage, context alignment, the ledger of a killed run,
snapshot prices, blocked Gemini prompts, quota errors and on/off options.

API behaviour is exercised over real HTTP against the loopback fakes in tests/fake_llm_servers.py;
the subclasses below only change what the fake server answers.
"""
from __future__ import annotations

import json
import os

import pytest

from distill.documents import Document, Span
from teachers import cache as cache_mod
from teachers import cost, llm
from teachers.align import Entity, align
from teachers.base import LabelFailure, label_corpus, read_usage
from teachers.cache import CachedResponse, ResponseCache, open_cache
from teachers.gemini import GeminiTeacher
from teachers.llm import parse_json
from teachers.ontology import from_spec as ontology_from_spec
from teachers.openai import OpenAITeacher
from teachers.prompts import PromptBuilder
from teachers.registry import ExternalAPIRefused, is_external, is_loopback, make_teacher
from tests.fake_llm_servers import FakeGeminiServer, FakeOpenAIServer
from tests.test_teacher_openai import TERMS, as_tuples, expected

LABELS = ("MEDICATION", "DISEASE", "SYMPTOM")
NOTE = "History of myocardial infarction, chest pain and fever; on aspirin."
DOC = Document("d1", NOTE)


class CapAware(FakeOpenAIServer):
    """Like a real API: an answer longer than ``max_tokens`` allows is cut (finish_reason length);
    below ``full_at`` the cut falls inside the first item (``cut_chars`` characters survive)."""

    def __init__(self, *a, full_at: int = 200, cut_chars: int = 25, **kw):
        super().__init__(*a, **kw)
        self.full_at, self.cut_chars = full_at, cut_chars

    def chat(self, req):
        status, body, headers = super().chat(req)
        if status == 200 and req.get("max_tokens", 10**6) < self.full_at:
            choice = body["choices"][0]
            choice["message"]["content"] = choice["message"]["content"][: self.cut_chars]
            choice["finish_reason"] = "length"
        return status, body, headers


def chat_requests(srv):
    return [r for r in srv.requests if r["path"] == "/v1/chat/completions"]


# --- 1, 11: the output cap grows when an answer is cut, and a full cap is never re-asked -------


def test_answer_cut_inside_its_first_item_is_reasked_with_a_larger_cap():
    with CapAware(TERMS) as srv:
        t = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False)
        spans = next(t.label([DOC]))
        caps = [r["body"]["max_tokens"] for r in chat_requests(srv)]
    assert caps == [caps[0], 2 * caps[0]] and caps[0] < 200 <= caps[1]
    assert as_tuples(spans) == expected(NOTE) and t.stats["truncated_retried"] == 1


def test_answer_cut_at_the_full_cap_fails_clearly_without_identical_reasks():
    with CapAware(TERMS) as srv:
        t = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False, max_output_tokens=150)
        result = next(t.label([DOC]))
        caps = [r["body"]["max_tokens"] for r in chat_requests(srv)]
    assert caps == [114, 150]  # grown once to the full cap, then no identical third request
    assert isinstance(result, LabelFailure)
    assert "truncated at 150 tokens" in result.reason and "max_output_tokens=150" in result.reason


def test_cut_off_answer_at_the_full_cap_is_salvaged_after_one_request():
    text = NOTE * 40  # long enough that the first cap is already max_output_tokens
    with FakeOpenAIServer(TERMS) as srv:
        srv.rules = {"aspirin": "truncated"}
        t = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False, max_output_tokens=512)
        assert t.output_cap(text) == 512
        spans = next(t.label([Document("long", text)]))
        assert len(chat_requests(srv)) == 1
    assert not isinstance(spans, LabelFailure) and spans and t.stats["salvaged_length"] == 1


def test_insufficient_quota_is_permanent_and_named():
    class NoQuota(FakeOpenAIServer):
        def chat(self, req):
            return 429, {"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                                   "type": "insufficient_quota", "code": "insufficient_quota"}}, {}

    with NoQuota({}) as srv:
        t = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False, concurrency=1, backoff_initial=0.01)
        results = list(t.label([Document("a", "on aspirin"), Document("b", "fever")]))
        assert len(chat_requests(srv)) == 2  # one request per document, no retries
    assert all(isinstance(r, LabelFailure) and "insufficient_quota" in r.reason and "quota" in r.reason for r in results)


# --- 2, 3: answers cut by the cap are never replayed from the cache ----------------------------


def test_rerun_with_a_larger_cap_does_not_replay_a_cut_off_answer(tmp_path):
    with CapAware(TERMS, full_at=100, cut_chars=80) as srv:
        t1 = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=tmp_path / "c.sqlite", max_output_tokens=64)
        first = next(t1.label([DOC]))
        assert t1.stats["salvaged_length"] == 1 and len(first) == 1
        sent = len(chat_requests(srv))
        t2 = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=tmp_path / "c.sqlite", max_output_tokens=4096)
        second = next(t2.label([DOC]))
        assert len(chat_requests(srv)) == sent + 1 and t2.usage.cached_requests == 0
    assert as_tuples(second) == expected(NOTE)


def test_cut_off_answer_left_in_an_older_cache_is_asked_again(tmp_path):
    with FakeOpenAIServer(TERMS) as srv:
        t = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=tmp_path / "c.sqlite")
        prompt = t.prompts.build(NOTE, doc_id="d1")
        t.cache.put(t.fingerprint, prompt.version, prompt.request_text(),
                    CachedResponse('{"entities": [{"text": "fever", "label": "SYMPTOM"}, {"te', finish_reason="length"))
        spans = next(t.label([DOC]))
        assert len(chat_requests(srv)) == 1
    assert as_tuples(spans) == expected(NOTE)


def test_salvaged_answer_is_counted_on_a_cache_hit(tmp_path):
    class OneBadItem(FakeOpenAIServer):
        def chat(self, req):
            status, body, headers = super().chat(req)
            msg = body["choices"][0]["message"]
            msg["content"] = msg["content"][:-2] + ', {"text": 5}]}'  # valid JSON, one unreadable item
            return status, body, headers

    with OneBadItem(TERMS) as srv:
        t1 = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=tmp_path / "c.sqlite", parse_attempts=1)
        next(t1.label([DOC]))
        t2 = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=tmp_path / "c.sqlite", parse_attempts=1)
        spans = next(t2.label([DOC]))
        assert len(chat_requests(srv)) == 1
    assert t1.stats["salvaged"] == 1 and t2.stats["salvaged"] == 1 and t2.usage.cached_requests == 1
    assert as_tuples(spans) == expected(NOTE)


def test_cut_off_batch_answer_is_billed_not_stored_and_collecting_twice_is_clean(tmp_path):
    docs = [DOC, Document("d2", "fever today")]
    with FakeOpenAIServer(TERMS) as srv:
        srv.rules = {"aspirin": "truncated"}
        t = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=tmp_path / "c.sqlite", backoff_initial=0.01)
        bid = t.submit_batch(docs)["batch_id"]
        got = t.collect_batch(bid, docs)
        assert (got["stored"], got["cut_off"], got["errors"]) == (1, 1, 0)
        billed = t._collected.requests
        again = t.collect_batch(bid, docs)
        assert (again["stored"], again["already_stored"], again["errors"]) == (0, 1, 0)
        assert t._collected.requests == billed == 2  # the stored answer is not billed twice
        srv.rules = {}
        results = list(t.label(docs))
        assert len(chat_requests(srv)) == 1  # only the cut-off chunk is asked again
        assert NOTE in chat_requests(srv)[0]["body"]["messages"][-1]["content"]
    assert [as_tuples(s) for s in results] == [expected(d.text) for d in docs]


# --- 4: loopback means the host is this machine -------------------------------------------------


@pytest.mark.parametrize("url", ["http://localhost.example.com/v1", "http://127.0.0.1.nip.io/v1",
                                 "https://api.example.com/v1?x=://localhost", "http://localhost@evil.example/v1",
                                 "127.0.0.1:8000/v1", ""])
def test_remote_hosts_that_mention_localhost_are_external(url, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert not is_loopback(url) and is_external("openai:gpt-4o-mini", {"base_url": url})
    with pytest.raises(ExternalAPIRefused):
        make_teacher("openai:some-unpriced-model", base_url=url, cache=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://127.3.2.1/v1", "http://localhost:1234/v1",
                                 "http://LOCALHOST/v1", "http://[::1]:8000/v1"])
def test_loopback_hosts_are_local(url):
    assert is_loopback(url) and not is_external("openai:gpt-4o-mini", {"base_url": url})
    assert llm.is_loopback is is_loopback  # the teachers and the registry use one test


# --- 5: JSON answers without the wrapper --------------------------------------------------------


def test_json_lines_and_a_bare_entity_object_are_read_whole():
    lines = parse_json('{"text": "aspirin", "label": "MEDICATION"}\n{"text": "fever", "label": "SYMPTOM"}', LABELS)
    assert [(e.text, e.label) for e in lines.entities] == [("aspirin", "MEDICATION"), ("fever", "SYMPTOM")]
    assert not lines.repaired
    single = parse_json('{"text": "aspirin", "label": "MEDICATION"}', LABELS)
    assert [(e.text, e.label) for e in single.entities] == [("aspirin", "MEDICATION")] and not single.repaired
    cut = parse_json('{"entities": [{"text": "aspirin", "label": "MEDICATION"}, {"text": "fev', LABELS)
    assert [e.text for e in cut.entities] == ["aspirin"] and cut.repaired


# --- 6, 7: alignment ---------------------------------------------------------------------------


CTX_TEXT = "Started aspirin on admission. Fever resolved. Continued aspirin at discharge."


def test_context_picks_the_occurrence_after_its_words():
    for ctx, want in [("Started", (8, 15)), ("Continued", (56, 63))]:
        spans = align(CTX_TEXT, [Entity("aspirin", "MEDICATION", ctx)], LABELS).spans
        assert [(s.start, s.end) for s in spans] == [want], ctx
    tie = "Gave aspirin. Gave aspirin."  # the same words before both: the earliest wins
    assert [(s.start, s.end) for s in align(tie, [Entity("aspirin", "MEDICATION", "Gave")], LABELS).spans] == [(5, 12)]
    both = [Entity("aspirin", "MEDICATION", "Started"), Entity("aspirin", "MEDICATION", "Continued")]
    assert sorted((s.start, s.end) for s in align(CTX_TEXT, both, LABELS).spans) == [(8, 15), (56, 63)]
    same = [Entity("aspirin", "MEDICATION", "x"), Entity("aspirin", "MEDICATION", "x")]
    assert sorted((s.start, s.end) for s in align(CTX_TEXT, same, LABELS).spans) == [(8, 15), (56, 63)]


def test_context_prompt_and_examples_list_every_occurrence():
    pb = PromptBuilder(context=True)
    system = pb.build("x").system
    assert "every occurrence" in system and "each distinct mention once" not in system
    assert "each distinct mention once" in PromptBuilder().build("x").system
    gold = [Span(8, 15, "MEDICATION", "aspirin"), Span(30, 35, "SYMPTOM", "Fever"), Span(56, 63, "MEDICATION", "aspirin")]
    answer = parse_json(pb.render_answer(CTX_TEXT, gold), LABELS).entities
    assert [(s.start, s.end) for s in align(CTX_TEXT, answer, LABELS).spans] == [(8, 15), (30, 35), (56, 63)]


def test_context_mode_guard_allows_a_mention_as_often_as_the_note_has_it():
    note = "aspirin; then aspirin; then aspirin again."
    g = llm.RepetitionGuard(note, per_occurrence=True)
    items = ", ".join(json.dumps({"text": "aspirin", "label": "MEDICATION", "context": c}) for c in "abc")
    assert not g.feed('{"entities": [' + items)
    assert g.feed(", " + json.dumps({"text": "aspirin", "label": "MEDICATION", "context": "d"})) and g.reason == "repetition"
    once = llm.RepetitionGuard(note)  # the default prompt asks for each string once: a third listing is a loop
    assert once.feed('{"entities": [' + items) and once.reason == "repetition"


def test_fuzzy_match_drops_a_stray_closing_bracket():
    text = "History of HTN (hypertension) and DM."
    assert [s.text for s in align(text, [Entity("hypertensions", "DISEASE")], LABELS).spans] == ["hypertension"]
    text = "Check HbA1c (A1c) today."
    assert [s.text for s in align(text, [Entity("HbA1c (A1cc)", "DISEASE")], LABELS).spans] == ["HbA1c (A1c)"]


# --- 8: the ledger and the failure list of interrupted and resumed runs -------------------------


class KilledAfter:
    """A labelling job interrupted (Ctrl-C, SIGTERM) after ``n`` documents, around a real teacher."""

    def __init__(self, inner: OpenAITeacher, n: int, seen: list | None = None, usage_path=None):
        self.inner, self.n, self.seen, self.usage_path = inner, n, seen, usage_path
        self.name, self.usage = inner.name, inner.usage

    def label(self, docs):
        for i, spans in enumerate(self.inner.label(docs)):
            if self.seen is not None:  # what a kill -9 at this moment would leave behind
                self.seen.append(json.loads(self.usage_path.read_text())["usage"] if self.usage_path.exists() else None)
            if i == self.n:
                raise KeyboardInterrupt
            yield spans


def test_killed_run_keeps_its_paid_requests_on_the_ledger(tmp_path):
    docs = [Document(f"d{i}", f"Note {i}: fever, given aspirin.") for i in range(4)]
    out = tmp_path / "out.jsonl"
    with FakeOpenAIServer(TERMS) as srv:
        t = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False, concurrency=1)
        with pytest.raises(KeyboardInterrupt):
            label_corpus(KilledAfter(t, 2), docs, out, progress=False)
        assert read_usage(out).requests == 3 and read_usage(out).documents == 2
        r = label_corpus(OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False, concurrency=1), docs, out,
                         progress=False)
        assert r.skipped_done == 2 and r.labelled == 2
        sent = len(chat_requests(srv))
    ledger = read_usage(out)
    assert ledger.requests == sent == 5 and ledger.documents == 4
    assert ledger.dollars == pytest.approx(t.usage.dollars + r.usage.dollars) and ledger.dollars > 0


def test_ledger_is_flushed_while_the_run_goes_on(tmp_path):
    docs = [Document(f"d{i}", f"Note {i}: fever.") for i in range(12)]
    out = tmp_path / "out.jsonl"
    seen: list = []
    with FakeOpenAIServer(TERMS) as srv:
        t = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False, concurrency=1)
        label_corpus(KilledAfter(t, 99, seen, out.with_name(out.name + ".usage.json")), docs, out, progress=False)
    assert seen[9] is None and seen[10]["documents"] == 10 and seen[10]["requests"] >= 10


def test_failures_file_forgets_documents_labelled_by_a_rerun(tmp_path):
    out = tmp_path / "out.jsonl"
    docs = [Document("d1", "on aspirin"), Document("d2", "fever today")]
    with FakeOpenAIServer(TERMS) as srv:
        srv.rules = {"aspirin": "500"}
        first = label_corpus(OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False, max_attempts=1), docs, out,
                             progress=False)
        assert list(first.failed) == ["d1"]
        srv.rules = {}
        label_corpus(OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False, max_attempts=1), docs, out,
                     progress=False)
    assert out.with_name(out.name + ".failures.jsonl").read_text() == ""


# --- 9: prices ---------------------------------------------------------------------------------


def test_other_models_of_a_family_get_no_relatives_price():
    for model in ["gemini-2.0-flash-lite", "gpt-4o-2024-05-13", "gpt-4o-audio-preview", "gpt-4o-mini-tts"]:
        with pytest.raises(cost.UnknownPrice):
            cost.price_for(model)
    assert cost.price_for("gpt-4o-2024-11-20").model == "gpt-4o"  # a snapshot after the price took effect
    assert cost.price_for("gemini-2.0-flash-001").model == "gemini-2.0-flash"
    assert cost.price_for("o1-mini-2024-09-12").model == "o1-mini"


# --- 10: Gemini blocked prompts ----------------------------------------------------------------


def test_blocked_gemini_prompt_is_a_permanent_failure():
    class Blocked(FakeGeminiServer):
        def route(self, method, path, body, headers):
            self._record(path, None)
            return 200, {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                         "usageMetadata": {"promptTokenCount": 500, "totalTokenCount": 500}}, {}

    with Blocked({}) as srv:
        t = GeminiTeacher("gemini-2.0-flash", base_url=srv.base_url, api_key="x", cache=False, backoff_initial=0.01)
        result = next(t.label([Document("d", "on aspirin")]))
        assert len(srv.requests) == 1
    assert isinstance(result, LabelFailure) and "prompt blocked: PROHIBITED_CONTENT" in result.reason


# --- 12: on/off words are options, not file names -----------------------------------------------


def test_cache_option_words(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cache_mod, "DEFAULT_PATH", tmp_path / "default" / "llm_cache.sqlite")
    for word in ["true", "on", "YES", "1"]:
        c = open_cache(word)
        assert isinstance(c, ResponseCache) and c.path == tmp_path / "default" / "llm_cache.sqlite"
    for word in ["false", "off", "no", "none", "0", False]:
        assert open_cache(word) is None
    assert sorted(os.listdir(tmp_path)) == ["default"]  # no file named ./true or ./on
    assert open_cache(str(tmp_path / "mine.sqlite")).path == tmp_path / "mine.sqlite"


def test_ontology_teacher_cache_off_builds_no_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path))
    ontology_from_spec("symp", cache="off")
    assert not (tmp_path / "lexicons").exists()
    ontology_from_spec("symp", cache="on")
    assert any(p.suffix == ".automaton" for p in (tmp_path / "lexicons").iterdir())
    with pytest.raises(ValueError, match="cache="):
        ontology_from_spec("symp", cache="maybe")
