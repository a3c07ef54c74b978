"""Regression tests for the third teacher review: the loop guard on pretty-printed JSON, prompts
longer than a local model's context, unexpected library errors, non-JSON 200 answers, Gemini's
RetryInfo, chunk cuts at initials and abbreviations, resuming into another teacher's output,
repeated failures, and OpenAI's content filter.

API clients run over real HTTP against the loopback fakes (subclassed only to change what the
server answers); the local teachers run a real tiny transformers model, or a stand-in for the
llama_cpp library's ``Llama`` class (no GGUF model is loaded in the test suite).
"""
from __future__ import annotations

import json
import time
import warnings

import pytest

from distill.documents import Document
from distill.io.jsonl import read_jsonl
from teachers.align import chunk_text
from teachers.base import LabelFailure, Usage, label_corpus, read_usage
from teachers.cache import CachedResponse, ResponseCache
from teachers.cost import FREE
from teachers.gemini import GeminiTeacher
from teachers.llm import GUARD_VERSION, LLMTeacher, RepetitionGuard, parse_json
from teachers.openai import OpenAITeacher
from teachers.prompts import Prompt, PromptBuilder
from tests.fake_llm_servers import FakeGeminiServer, FakeOpenAIServer

TERMS = {"aspirin": "MEDICATION", "chest pain": "SYMPTOM", "fever": "SYMPTOM", "C. difficile colitis": "DISEASE"}
LABELS = ("MEDICATION", "DISEASE", "SYMPTOM")
HTML = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>nginx</body></html>"


def chat_requests(srv):
    return [r for r in srv.requests if r["path"] == "/v1/chat/completions"]


# --- 1: the loop guard and pretty-printed JSON --------------------------------------------------


def stream(guard: RepetitionGuard, answer: str, piece: int = 3) -> None:
    for i in range(0, len(answer), piece):  # small pieces, as llama.cpp streams
        if guard.feed(answer[i : i + piece]):
            return


def test_pretty_printed_json_answer_is_not_taken_for_a_loop():
    note = "Patient with asthma and hypertension was given salbutamol and lisinopril. Reports fever and cough."
    ents = [("asthma", "DISEASE"), ("hypertension", "DISEASE"), ("salbutamol", "MEDICATION"),
            ("lisinopril", "MEDICATION"), ("fever", "SYMPTOM"), ("cough", "SYMPTOM")]
    answer = "```json\n" + json.dumps({"entities": [{"text": t, "label": lab} for t, lab in ents]}, indent=2) + "\n```"
    g = RepetitionGuard(note)
    stream(g, answer)
    assert g.reason is None and g.text == answer
    assert [e.text for e in parse_json(g.text, LABELS).entities] == [t for t, _ in ents]


def test_pretty_printed_json_that_loops_is_still_stopped():
    note = "Cough for two weeks, fever."
    item = json.dumps({"text": "cough", "label": "SYMPTOM"}, indent=2)
    answer = '{\n"entities": [\n' + ",\n".join([item] * 10) + "\n]\n}"
    g = RepetitionGuard(note)
    stream(g, answer)
    assert g.reason == "repetition" and len(g.text) < len(answer) // 2


# --- tiny real transformers models (no training: these tests need the shapes, not the answers) -


def tiny_lm(path, extra_positions: int, note: str, prompts: PromptBuilder) -> str:
    """A random 1-layer GPT-2 whose position table holds the prompt of ``note`` plus
    ``extra_positions`` tokens (GPT-2 indexes past its table with an IndexError)."""
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([m["content"] for m in prompts.build(note).messages],
                            trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}</s>{% endfor %}"
    n_prompt = len(tok.apply_chat_template(prompts.build(note).messages, add_generation_prompt=True, return_dict=True)["input_ids"])
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_prompt + extra_positions, n_embd=16, n_layer=1, n_head=2,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


# --- 1: answers cached under an older guard are generated again ---------------------------------


def test_local_answer_cached_by_an_older_guard_is_not_replayed(tmp_path):
    from teachers.local import TransformersTeacher

    pb = PromptBuilder(fmt="compact")
    note = "Cough and fever."
    model = tiny_lm(tmp_path / "lm", 40, note, pb)
    cache = ResponseCache(tmp_path / "c.sqlite")
    t = TransformersTeacher(model, prompts=pb, cache=cache, max_output_tokens=8)
    prompt = pb.build(note, doc_id="d")
    cut = CachedResponse("SYMPTOM: cough", 10, 5, "repetition")  # the old guard cut the answer here
    old = {k: v for k, v in t.fingerprint_fields().items() if k != "guard"}
    cache.put(json.dumps(old, sort_keys=True), prompt.version, prompt.request_text(), cut)
    next(t.label([Document("d", note)]))
    assert t.usage.requests == 1 and t.usage.cached_requests == 0  # generated, not replayed
    cache.put(t.fingerprint, prompt.version, prompt.request_text(), cut)  # the same entry under today's guard
    t2 = TransformersTeacher(model, prompts=pb, cache=cache, max_output_tokens=8)
    assert [s.text for s in next(t2.label([Document("d", note)]))] == ["Cough"]
    assert t2.usage.requests == 0 and t.fingerprint_fields()["guard"] == GUARD_VERSION


# --- 2: prompts longer than a local model's context ----------------------------------------------


def test_transformers_prompt_over_the_context_fails_its_document_and_answers_fit(tmp_path):
    from teachers.local import TransformersTeacher

    pb = PromptBuilder(fmt="compact")
    short = "Chest pain."
    model = tiny_lm(tmp_path / "lm", 6, short, pb)  # room for the short prompt and 6 answer tokens
    t = TransformersTeacher(model, prompts=pb, cache=False, max_output_tokens=64)
    docs = [Document("long", "The patient reports chest pain. " * 10), Document("short", short)]
    result = label_corpus(t, docs, tmp_path / "out.jsonl", progress=False)
    assert "exceeds the model's context" in result.failed["long"] and "lower chunk_chars" in result.failed["long"]
    # the short prompt fits; its answer is capped at the 6 positions left instead of indexing past them
    assert "unexpected" not in result.failed.get("short", "")
    assert t.usage.requests == 2 and t.usage.output_tokens <= 6


def fake_tokens(data: bytes) -> int:
    return len(data) // 4 + 1


class FakeLlama:
    """Stands in for ``llama_cpp.Llama``: ~4 characters a token; like llama.cpp, the stream
    refuses a formatted prompt longer than ``n_ctx`` with a ValueError when it starts."""

    template_tokens = 0  # what the chat template adds (unknown to the teacher)

    def __init__(self, model_path: str, n_ctx: int, **kw):
        self._n_ctx, self.n_tokens = n_ctx, 0

    def n_ctx(self) -> int:
        return self._n_ctx

    def tokenize(self, data: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return list(range(fake_tokens(data)))

    def create_chat_completion(self, messages, max_tokens, **kw):
        n = fake_tokens("\n".join(m["content"] for m in messages).encode()) + self.template_tokens

        def chunks():
            if n >= self._n_ctx:
                raise ValueError(f"Requested tokens ({n}) exceed context window of {self._n_ctx}")
            self.n_tokens = n + 1
            yield {"choices": [{"delta": {"content": '{"entities": []}'}, "finish_reason": "stop"}]}

        return chunks()


def test_llama_cpp_prompt_over_the_context_fails_its_document_not_the_run(tmp_path, monkeypatch):
    llama_cpp = pytest.importorskip("llama_cpp")
    from teachers.local import LlamaCppTeacher

    monkeypatch.setattr(llama_cpp, "Llama", FakeLlama)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    pb = PromptBuilder(fmt="json")
    n_short = fake_tokens("\n".join(m["content"] for m in pb.build("ok").messages).encode())
    t = LlamaCppTeacher(str(gguf), n_ctx=n_short + 20, prompts=pb, cache=False)
    docs = [Document("long", "chest pain " * 200), Document("edge", "ok " + "x" * 60), Document("short", "ok")]
    result = label_corpus(t, docs, tmp_path / "out.jsonl", progress=False)
    assert "exceeds the model's context" in result.failed["long"] and "raise n_ctx" in result.failed["long"]
    assert result.labelled == 2  # "edge" fits the estimate without a template
    # a chat template that makes "edge" too long is only seen by llama.cpp: its refusal is translated
    monkeypatch.setattr(FakeLlama, "template_tokens", 15)
    t2 = LlamaCppTeacher(str(gguf), n_ctx=n_short + 20, prompts=pb, cache=False)
    result = label_corpus(t2, docs[1:], tmp_path / "out2.jsonl", progress=False)
    reason = result.failed["edge"]
    assert f"tokens exceeds the model's context {n_short + 20}; lower chunk_chars or raise n_ctx" in reason
    assert "unexpected" not in reason and result.labelled == 1


# --- 2: an unexpected library error fails one document, never the run ----------------------------


def test_unexpected_sdk_error_fails_one_document_and_the_run_goes_on(tmp_path):
    class OddBody(FakeOpenAIServer):  # valid JSON the SDK accepts, but not shaped like a completion
        def chat(self, req):
            if "aspirin" in req["messages"][-1]["content"]:
                self._record("odd", None)
                return 200, {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": "oops"}, {}
            return super().chat(req)

    docs = [Document("d1", "given aspirin"), Document("d2", "chest pain today")]
    with OddBody(TERMS) as srv:
        t = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False, max_attempts=3, concurrency=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydantic's serialisation warning about the odd body
            result = label_corpus(t, docs, tmp_path / "out.jsonl", progress=False)
    assert "unexpected AttributeError" in result.failed["d1"] and result.labelled == 1
    assert t.usage.requests == 2  # not retried: nothing says waiting would help


class Raising(LLMTeacher):
    """A teacher whose transport raises like a library would (the fake servers cannot make
    the SDKs raise a ValueError or a KeyboardInterrupt)."""

    family = "raising"

    def __init__(self, exc: BaseException, **kw):
        super().__init__("m", cache=False, price=FREE, **kw)
        self.exc = exc

    def _request(self, prompt: Prompt, max_tokens: int) -> CachedResponse:
        if "boom" in prompt.messages[-1]["content"]:
            raise self.exc
        return CachedResponse('{"entities": [{"text": "fever", "label": "SYMPTOM"}]}', 10, 5)


def test_library_value_error_is_a_document_failure(tmp_path):
    t = Raising(ValueError("Requested tokens (911) exceed context window of 256"), concurrency=2)
    docs = [Document("a", "boom fever"), Document("b", "fever")]
    result = label_corpus(t, docs, tmp_path / "out.jsonl", progress=False)
    assert result.failed == {"a": "chunk 1/1 (characters 0-10): unexpected ValueError: Requested tokens (911) "
                                  "exceed context window of 256"}
    assert result.labelled == 1 and [d.id for d in read_jsonl(tmp_path / "out.jsonl")] == ["b"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3)])
def test_interrupts_still_stop_the_run(tmp_path, exc):
    t = Raising(exc, concurrency=1)
    with pytest.raises(type(exc)):
        label_corpus(t, [Document("b", "fever"), Document("a", "boom")], tmp_path / "out.jsonl", progress=False)
    assert [d.id for d in read_jsonl(tmp_path / "out.jsonl")] == ["b"] and read_usage(tmp_path / "out.jsonl").documents == 1


# --- 3: a 200 whose body is not JSON -------------------------------------------------------------


class RawMixin:
    """Answers a request whose note holds PROXY with raw bytes and a content type, as a proxy would."""

    raw: tuple[str, bytes] = ("text/html", HTML)

    def _dispatch(self, h, method, body):
        if method == "POST" and b"PROXY" in body:
            self._record("raw", None)
            ctype, data = self.raw
            h.send_response(200)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return
        super()._dispatch(h, method, body)


class RawOpenAI(RawMixin, FakeOpenAIServer):
    pass


class RawGemini(RawMixin, FakeGeminiServer):
    pass


@pytest.mark.parametrize("family", ["openai", "gemini"])
@pytest.mark.parametrize("raw,shown", [(("text/html", HTML), "<html><head><title>502 Bad Gateway"),
                                       (("application/json", b"{not json"), "{not json")])
def test_non_json_200_is_retried_then_a_document_failure(tmp_path, family, raw, shown):
    server, teacher = (RawOpenAI, OpenAITeacher) if family == "openai" else (RawGemini, GeminiTeacher)
    model = "gpt-4o-mini" if family == "openai" else "gemini-2.0-flash"
    docs = [Document("d1", "PROXY chest pain"), Document("d2", "given aspirin")]
    with server(TERMS) as srv:
        srv.raw = raw
        t = teacher(model, base_url=srv.base_url, cache=False, max_attempts=2, backoff_initial=0.01, concurrency=1)
        result = label_corpus(t, docs, tmp_path / "out.jsonl", progress=False)
        raw_hits = sum(r["path"] == "raw" for r in srv.requests)
    reason = result.failed["d1"]
    assert f"non-JSON answer from {srv.root}" in reason and shown in reason and "gave up after 2 attempts" in reason
    assert raw_hits == 2 and result.labelled == 1


# --- 4: Gemini's RetryInfo -----------------------------------------------------------------------


class QuotaWindow(FakeGeminiServer):
    """The first request gets a 429 whose body (not a header) says how long to wait."""

    retry_delay = 0.6

    def route(self, method, path, body, headers):
        self.times = getattr(self, "times", []) + [time.monotonic()]
        if len(self.times) == 1:
            self._record(path, None)
            return 429, {"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
                                   "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                                               {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                "retryDelay": f"{self.retry_delay}s"}]}}, {}
        return super().route(method, path, body, headers)


def test_gemini_waits_the_retry_delay_of_the_error_body(tmp_path):
    with QuotaWindow(TERMS) as srv:
        t = GeminiTeacher("gemini-2.0-flash", base_url=srv.base_url, cache=False, backoff_initial=0.01)
        spans = next(t.label([Document("d", "chest pain")]))
    assert [s.text for s in spans] == ["chest pain"]
    assert len(srv.times) == 2 and srv.times[1] - srv.times[0] >= QuotaWindow.retry_delay - 0.05


# --- 5: chunk cuts at initials and abbreviations -------------------------------------------------

ITEMS = ", ".join(["hypertension", "type 2 diabetes mellitus", "chronic kidney disease stage 3", "gout"] * 80)


@pytest.mark.parametrize("mention", ["recurrent C. difficile colitis", "St. John's wort", "Dr. Smith", "e.g. aspirin"])
@pytest.mark.parametrize("size,overlap", [(6000, 300), (2500, 200)])
def test_a_mention_cut_by_a_chunk_end_is_whole_in_a_chunk(mention, size, overlap):
    for pad in range(0, 400, 9):  # move the mention across the cut
        text = "Admitted with diarrhea. History: " + ITEMS[: pad + size // 2] + ", " + mention + ", " + ITEMS * 2 + ". End."
        i = text.find(mention)
        chunks = chunk_text(text, size, overlap)
        assert any(a <= i and i + len(mention) <= b for a, b in chunks), (pad, chunks)
        assert all(b - a <= size for a, b in chunks)
        assert all(c < b for (_, b), (c, _) in zip(chunks, chunks[1:])), "consecutive chunks must overlap"


def test_sentence_ends_are_still_preferred_cuts():
    text = "Patient seen on the ward today. Dr. Jones " + "word " * 30
    assert chunk_text(text, 60, 10)[0] == (0, 32)  # after "today. ", not after the later "Dr. "


def test_mention_across_a_cut_at_an_initial_is_labelled_end_to_end():
    text = "Admitted with diarrhea. History: " + ITEMS[:3000] + ", recurrent C. difficile colitis, " + ITEMS + "."
    with FakeOpenAIServer(TERMS) as srv:
        t = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False)
        spans = t.label_document(Document("d", text))
    i = text.find("C. difficile colitis")
    assert [(s.start, s.end) for s in spans if s.label == "DISEASE"] == [(i, i + 20)]


# --- 6: resuming into another teacher's output ---------------------------------------------------


@pytest.mark.parametrize("keep_ledger", [True, False])
def test_resuming_into_another_teachers_output_is_refused(tmp_path, keep_ledger):
    out = tmp_path / "out.jsonl"
    docs = [Document("n1", "Chest pain, given aspirin."), Document("n2", "No fever.")]
    with FakeOpenAIServer(TERMS) as o, FakeGeminiServer(TERMS) as g:
        label_corpus(OpenAITeacher("gpt-4o-mini", base_url=o.base_url, cache=False), docs, out, progress=False)
        if not keep_ledger:
            out.with_name(out.name + ".usage.json").unlink()
        before = out.read_text()
        gem = GeminiTeacher("gemini-2.0-flash", base_url=g.base_url, cache=False)
        with pytest.raises(ValueError, match="holds labels of openai:gpt-4o-mini, not gemini:gemini-2.0-flash: use another --out"):
            label_corpus(gem, docs, out, progress=False)
        assert g.requests == [] and out.read_text() == before
        # the same teacher resumes as before
        again = label_corpus(OpenAITeacher("gpt-4o-mini", base_url=o.base_url, cache=False), docs, out, progress=False)
    assert again.skipped_done == 2 and again.labelled == 0


# --- 7: a document that keeps failing is listed once -------------------------------------------


def test_repeated_failures_are_listed_once_with_the_latest_reason(tmp_path):
    out = tmp_path / "out.jsonl"
    docs = [Document("d1", "on aspirin"), Document("d2", "fever today")]
    fails = out.with_name(out.name + ".failures.jsonl")
    with FakeOpenAIServer(TERMS) as srv:
        for fault in ["500", "500", "429"]:
            srv.rules = {"aspirin": fault}
            label_corpus(OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False, max_attempts=1), docs, out,
                         progress=False)
        records = [json.loads(ln) for ln in fails.read_text().splitlines()]
        assert [r["id"] for r in records] == ["d1"] and "HTTP 429" in records[0]["reason"]
        assert read_usage(out).failures == 1 and read_usage(out).documents == 1
        srv.rules = {}
        label_corpus(OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=False, max_attempts=1), docs, out,
                     progress=False)
    assert fails.read_text() == "" and read_usage(out).failures == 0 and read_usage(out).documents == 2


def test_a_half_written_failure_line_is_kept(tmp_path):
    class Failing:
        name, usage = "dummy", Usage()

        def label(self, docs):
            for _ in docs:
                yield LabelFailure("boom")

    out = tmp_path / "out.jsonl"
    fails = out.with_name(out.name + ".failures.jsonl")
    fails.write_text('{"id": "a", "teacher": "dummy", "reason": "old"}\n{"id": "b", "tea')
    label_corpus(Failing(), [Document("a", "x")], out, progress=False)
    assert fails.read_text().splitlines() == ['{"id": "b", "tea', '{"id": "a", "teacher": "dummy", "reason": "boom"}']
    assert read_usage(out).failures == 1


# --- optional: OpenAI's content filter ---------------------------------------------------------


class Filtered(FakeOpenAIServer):
    def chat(self, req):
        status, body, headers = super().chat(req)
        body["choices"][0]["finish_reason"] = "content_filter"
        return status, body, headers


def test_answer_cut_by_the_content_filter_is_not_cached(tmp_path):
    docs = [Document("d", "chest pain, given aspirin")]
    with Filtered(TERMS) as srv:
        for _ in range(2):
            t = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=tmp_path / "c.sqlite", parse_attempts=1)
            assert len(next(t.label(docs))) == 2  # what came back is used...
            assert t.stats["salvaged_content_filter"] == 1 and t.usage.cached_requests == 0
        assert len(chat_requests(srv)) == 2  # ...but never replayed from the cache


def test_cli_label_into_another_teachers_file_is_a_one_line_error(tmp_path):
    from typer.testing import CliRunner

    from distill.cli import app

    notes = tmp_path / "n.jsonl"
    notes.write_text('{"id": "a", "text": "fever and aspirin"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    runner = CliRunner()
    assert runner.invoke(app, ["label", "--teacher", "ontology:open", "--input", str(notes), "--out", str(out),
                               "--no-progress"]).exit_code == 0
    res = runner.invoke(app, ["label", "--teacher", "ontology:hpo", "--input", str(notes), "--out", str(out),
                              "--no-progress"])
    assert res.exit_code == 2 and "holds labels of ontology:open, not ontology:hpo" in res.output
    assert "Traceback" not in res.output
