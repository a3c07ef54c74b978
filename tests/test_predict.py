"""`distill train` / `distill predict` end to end with a tiny random base model saved in the test."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel
from typer.testing import CliRunner

from distill.cli import app
from distill.corpora import load_corpus
from distill.documents import Document
from distill.io.jsonl import read_jsonl, write_jsonl
from students import base_models, tagging
from students.predict import TorchPredictor, load_predictor
from students.student import Student


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared 2-core box, thread barriers cost more than they save."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A random 1-layer BERT with the MiniLM tokenizer, saved like any local base model."""
    path = tmp_path_factory.mktemp("tiny_base")
    tok = AutoTokenizer.from_pretrained(str(base_models.minilm_dir()))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def corpus(shared_data):
    return load_corpus("maccrobat", shared_data, split="train")[:4], load_corpus("maccrobat", shared_data, split="test")[:3]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_base, corpus):
    """`distill train` on gold JSONL, with a dev set and a second gold stage."""
    train, test = corpus
    tmp = tmp_path_factory.mktemp("run")
    write_jsonl(train, tmp / "train.jsonl")
    write_jsonl(test, tmp / "dev.jsonl")
    out = tmp / "model"
    r = CliRunner().invoke(app, [
        "train", "--train", str(tmp / "train.jsonl"), "--dev", str(tmp / "dev.jsonl"), "--base-model", str(tiny_base),
        "--out", str(out), "--max-steps", "12", "--batch-size", "8", "--lr", "3e-3", "--max-length", "64",
        "--stride", "16", "--gold", str(tmp / "dev.jsonl"), "--gold-epochs", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "relaxed F1" in r.output
    return out


def test_model_dir_and_training_card(trained, tiny_base):
    card = json.loads((trained / "training_card.json").read_text())
    assert card["base_model"]["resolved"] == str(tiny_base)
    assert set(card["stages"]) == {"gold", "gold_finetune"}
    assert card["hyper_parameters"]["max_length"] == 64 and card["data"]["train_documents"] == 4
    assert "dev" in card["scores"]
    md = (trained / "training_card.md").read_text()
    assert "Stage `gold_finetune`" in md and "relaxed micro P/R/F1" in md


def test_predictions_do_not_depend_on_batching(trained, corpus):
    _, test = corpus
    one = TorchPredictor.from_dir(trained, batch_size=1).predict_texts([d.text for d in test])
    many = TorchPredictor.from_dir(trained, batch_size=64).predict_texts([d.text for d in test])
    assert [[(s.start, s.end, s.label) for s in x] for x in one] == [[(s.start, s.end, s.label) for s in x] for x in many]
    for doc, spans in zip(test, one):
        for s in spans:
            assert doc.text[s.start : s.end] == s.text and 0.0 < s.score <= 1.0


def test_cli_predict_writes_spans_for_every_note(trained, corpus, tmp_path):
    _, test = corpus
    notes = tmp_path / "notes.jsonl"
    write_jsonl([Document(d.id, d.text) for d in test] + [Document("empty", "")], notes)
    out = tmp_path / "preds.jsonl"
    r = CliRunner().invoke(app, ["predict", "--model", str(trained), "--input", str(notes), "--output", str(out),
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    preds = list(read_jsonl(out))
    assert [d.id for d in preds] == [d.id for d in test] + ["empty"]
    assert preds[-1].layers.get("pred", []) == []


def test_student_facade(trained, corpus):
    _, test = corpus
    st = Student.load(trained)
    assert st.labels == ["MEDICATION", "DISEASE", "SYMPTOM"] and st.card["loss"] == "ce"
    docs = st.predict(test[:1])
    assert "pred" in docs[0].layers and "gold" in docs[0].layers
    assert isinstance(load_predictor(trained), TorchPredictor)


def test_student_train_facade(tmp_path, tiny_base, corpus):
    train, _ = corpus
    st = Student.train(train[:2], out=tmp_path / "s", base=str(tiny_base), max_steps=2, max_length=64, stride=16,
                       progress=False)
    assert st.card["hyper_parameters"]["max_steps"] == 2 and st.labels == ["MEDICATION", "DISEASE", "SYMPTOM"]
    assert len(st.predict(train[:1])) == 1


def test_bad_model_dirs(tmp_path, trained):
    with pytest.raises(FileNotFoundError):
        load_predictor(tmp_path / "nowhere")
    with pytest.raises(tagging.TaggingError):
        load_predictor(tmp_path)
    (tmp_path / "config.json").write_text((trained / "config.json").read_text())
    with pytest.raises(tagging.TaggingError, match="labels.json"):
        load_predictor(tmp_path)


def test_torch_predictor_rejects_files_from_another_model(tmp_path, trained):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(trained, d, ignore=shutil.ignore_patterns("checkpoints*"))
    meta = tagging.read_labels_json(d)
    tagging.write_labels_json(d, meta["labels"][::-1], meta["max_length"], meta["stride"])  # same tag count
    with pytest.raises(tagging.TaggingError, match=r"labels\.json lists tags .* but .*config\.json id2label gives"):
        TorchPredictor.from_dir(d)
    tagging.write_labels_json(d, meta["labels"], 4096, meta["stride"])
    with pytest.raises(tagging.TaggingError, match=r"max_length 4096 but .*config\.json allows 128 positions"):
        load_predictor(d)
    tagging.write_labels_json(d, meta["labels"], meta["max_length"], meta["stride"])
    with pytest.raises(tagging.TaggingError, match="batch_size must be at least 1, got 0"):
        TorchPredictor.from_dir(d, batch_size=0)
    for w in d.glob("*.safetensors"):
        w.unlink()
    with pytest.raises(tagging.TaggingError, match="has no weights"):
        load_predictor(d)


def test_cli_train_errors_are_one_line(tmp_path, tiny_base):
    notes = tmp_path / "n.jsonl"
    write_jsonl([Document("a", "no labels here")], notes)
    r = CliRunner().invoke(app, ["train", "--train", str(notes), "--base-model", str(tiny_base), "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "layer" in r.output
    r = CliRunner().invoke(app, ["train", "--train", str(notes), "--loss", "kd", "--base-model", str(tiny_base),
                                 "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "soft" in r.output
    labelled = tmp_path / "g.jsonl"
    doc = Document("a", "took aspirin")
    write_jsonl([doc.with_layers(gold=[doc.span(5, 12, "MEDICATION")])], labelled)
    r = CliRunner().invoke(app, ["train", "--train", str(labelled), "--base-model", str(tmp_path / "missing"),
                                 "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "does not exist" in r.output
