"""The local transformers teacher: real loading and greedy generation with a tiny model.

The model is built here: a byte-level BPE tokenizer trained on the prompts with the
``tokenizers`` library, a chat template, and a 2-layer Llama trained for a few seconds to
answer two prompts — one correctly, one by looping forever — so the test checks real
offsets, the repetition stop and the cache, with no network and no downloaded weights.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from distill.documents import Document  # noqa: E402
from teachers.base import LabelFailure, label_corpus  # noqa: E402
from teachers.local import TransformersTeacher, compact_grammar, from_spec  # noqa: E402
from teachers.prompts import PromptBuilder  # noqa: E402

SHORT = {"MEDICATION": "a drug.", "DISEASE": "a disease.", "SYMPTOM": "a symptom."}
NOTE_OK = "Patient with asthma was given salbutamol. No fever."
ANSWER_OK = "DISEASE: asthma\nMEDICATION: salbutamol\nSYMPTOM: fever"
NOTE_LOOP = "Cough for two weeks."
ANSWER_LOOP = "SYMPTOM: cough\n" * 12  # no end token: the model learns to loop


def prompts() -> PromptBuilder:
    return PromptBuilder(fmt="compact", guidelines=SHORT)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-llm")
    pb = prompts()
    convs = [(pb.build(NOTE_OK).messages, ANSWER_OK, True), (pb.build(NOTE_LOOP).messages, ANSWER_LOOP, False)]
    corpus = [m["content"] for msgs, _, _ in convs for m in msgs] + [a for _, a, _ in convs] * 3
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1500, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>")
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    seqs, masks = [], []
    for msgs, answer, ends in convs:
        prompt_ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)["input_ids"]
        ans = tok(answer, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if ends else [])
        seqs.append(prompt_ids + ans)
        masks.append([-100] * len(prompt_ids) + ans)
    width = max(map(len, seqs))
    ids = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])
    labels = torch.tensor([m + [-100] * (width - len(m)) for m in masks])
    attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains ~10x faster on one thread of a busy CPU
    try:
        for _ in range(300):
            loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            if loss.item() < 0.02:
                break
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 0.05, f"tiny model did not learn its answers (loss {loss.item():.3f})"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_generation_path_gives_right_offsets(tiny_model, tmp_path):
    t = TransformersTeacher(tiny_model, prompts=prompts(), cache=tmp_path / "c.sqlite", concurrency=1, parse_attempts=1)
    assert t.device == ("cuda" if torch.cuda.is_available() else "cpu")
    spans = next(t.label([Document("a", NOTE_OK)]))
    assert [(s.start, s.end, s.label, s.text) for s in spans] == [
        (13, 19, "DISEASE", "asthma"), (30, 40, "MEDICATION", "salbutamol"), (45, 50, "SYMPTOM", "fever")]
    assert t.usage.requests == 1 and t.usage.output_tokens < 40 and t.usage.dollars == 0
    # a second teacher over the same cache generates nothing
    t2 = TransformersTeacher(tiny_model, prompts=prompts(), cache=tmp_path / "c.sqlite", concurrency=1)
    assert next(t2.label([Document("a", NOTE_OK)])) == spans and t2.usage.requests == 0


def test_looping_model_is_stopped_by_the_repetition_guard(tiny_model, tmp_path):
    t = TransformersTeacher(tiny_model, prompts=prompts(), cache=False, concurrency=1, parse_attempts=1,
                            max_output_tokens=400, output_factor=20.0)
    cap = t.output_cap(NOTE_LOOP)
    result = label_corpus(t, [Document("loop", NOTE_LOOP)], tmp_path / "out.jsonl", progress=False)
    assert result.labelled == 1 and result.spans == 1  # "cough" once, from the repeated lines
    assert t.stats["salvaged_repetition"] == 1
    assert t.usage.output_tokens < cap / 3, "generation ran on instead of stopping at the loop"


def test_output_cap_scales_with_the_chunk(tiny_model):
    t = TransformersTeacher(tiny_model, prompts=prompts(), cache=False, output_factor=0.3, max_output_tokens=4096)
    assert t.output_cap("x" * 100) < t.output_cap("x" * 2000) <= 64 + 600


def test_unaligned_strings_are_counted_not_invented(tiny_model):
    # The model answers "asthma/salbutamol/fever" for this prompt shape whatever the note says:
    # on a note without those words, nothing may be labelled and all three are counted.
    t = TransformersTeacher(tiny_model, prompts=prompts(), cache=False, parse_attempts=1)
    spans = next(t.label([Document("b", "Patient with gout was given colchicine. No rash.")]))
    assert not isinstance(spans, LabelFailure)
    assert all(s.text in ("gout", "colchicine", "rash") for s in spans)  # only strings of this note
    assert t.stats["unaligned"] >= 1 and t.stats["entities"] >= t.stats["unaligned"] + len(spans)


def test_from_spec_defaults_and_refuses_remote_servers(tiny_model):
    t = from_spec(tiny_model, cache=False)
    assert t.fmt == "json" and t.concurrency == 1 and t.name == f"local:{tiny_model}"
    with pytest.raises(ValueError, match="off this machine"):
        from_spec("qwen", base_url="http://gpu-server.example:8000/v1")
    served = from_spec("qwen", base_url="http://127.0.0.1:9/v1", cache=False)
    assert served.name == "local:qwen" and served.price.input_per_1m == 0


def test_compact_grammar_compiles_in_llama_cpp():
    llama_cpp = pytest.importorskip("llama_cpp")
    g = compact_grammar(("MEDICATION", "DISEASE", "SYMPTOM"))
    assert llama_cpp.LlamaGrammar.from_string(g, verbose=False) is not None


def test_openai_compatible_local_server_in_compact_format(tmp_path):
    from tests.fake_llm_servers import FakeOpenAIServer

    with FakeOpenAIServer({"asthma": "DISEASE", "salbutamol": "MEDICATION"}) as srv:
        t = from_spec("qwen2.5-1.5b", base_url=srv.base_url, cache=tmp_path / "c.sqlite", fmt="compact")
        spans = next(t.label([Document("a", NOTE_OK)]))
        body = srv.requests[0]["body"]
    assert [(s.start, s.end, s.label) for s in spans] == [(13, 19, "DISEASE"), (30, 40, "MEDICATION")]
    assert "response_format" not in body and body["model"] == "qwen2.5-1.5b"
    assert t.usage.dollars == 0 and t.usage.input_tokens > 0
