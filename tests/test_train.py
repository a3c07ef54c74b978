"""Student training with tiny random BERTs built here (MiniLM tokenizer): losses, training, resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForTokenClassification, TrainerCallback

from distill import aggregate as agg
from distill.corpora import load_corpus
from distill.documents import DEFAULT_LABELS, Document, Span
from students import base_models, tagging
from students.train import (Collator, TrainConfig, TrainingDataError, build_features, hard_ce, kd_loss,
                            train_student)

TAGS = tagging.bio_tags(DEFAULT_LABELS)


def tiny_factory(num_labels, id2label, label2id):
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(base_models.minilm_dir()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=num_labels,
                     id2label=id2label, label2id=label2id)
    return BertForTokenClassification(cfg), tok


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared 2-core box, thread barriers cost more than they save."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = dict(max_length=64, stride=16, batch_size=8, learning_rate=3e-3, head_lr_multiplier=5.0, warmup_ratio=0.0)


@pytest.fixture(scope="module")
def docs(shared_data):
    return load_corpus("maccrobat", shared_data, split="train")[:4]


@pytest.fixture(scope="module")
def dev_docs(shared_data):
    return load_corpus("maccrobat", shared_data, split="dev")[:2]


def mean_loss(model, feats) -> float:
    model.eval()
    batch = Collator(0)(feats[:32])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return float(hard_ce(logits, batch["labels"]))


# --- losses ------------------------------------------------------------------------------------


def test_kd_loss_equals_hard_ce_for_one_hot_targets():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 10, len(TAGS), generator=g)
    labels = torch.randint(0, len(TAGS), (3, 10), generator=g)
    labels[:, 0] = tagging.IGNORE_INDEX
    labels[1, 5:] = tagging.IGNORE_INDEX
    targets = torch.zeros(3, 10, len(TAGS))
    keep = labels != tagging.IGNORE_INDEX
    targets[keep] = torch.nn.functional.one_hot(labels[keep], len(TAGS)).float()
    assert torch.allclose(kd_loss(logits, targets, 1.0), hard_ce(logits, labels), atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_loss_is_zero_when_the_student_matches_and_positive_otherwise(temperature):
    logits = torch.randn(2, 6, len(TAGS))
    targets = torch.softmax(logits, -1)
    targets[:, 0] = 0.0  # ignored rows
    assert float(kd_loss(logits, targets, temperature)) == pytest.approx(0.0, abs=1e-5)
    assert float(kd_loss(torch.randn(2, 6, len(TAGS)), targets, temperature)) > 0.01
    assert float(kd_loss(logits, torch.zeros_like(targets))) == 0.0  # nothing labelled


# --- features / bad input ----------------------------------------------------------------------


def test_build_features_and_bad_training_data(docs):
    tok = AutoTokenizer.from_pretrained(str(base_models.minilm_dir()))
    feats, st = build_features(docs, tok, DEFAULT_LABELS, "gold", 64, 16)
    assert st.windows == len(feats) > len(docs) and sum(st.spans.values()) > 50
    assert all(len(f["input_ids"]) <= 64 and len(f["labels"]) == len(f["input_ids"]) for f in feats)
    with pytest.raises(TrainingDataError, match="no training data"):
        build_features([Document("e", "   ", layers={"gold": []})], tok, DEFAULT_LABELS, "gold", 64, 16)
    with pytest.raises(TrainingDataError, match="no spans"):
        build_features([Document("e", "a note", layers={"gold": []})], tok, DEFAULT_LABELS, "gold", 64, 16)
    text = "fever \u200b cough"  # a span on the zero-width space covers no word: counted, not trained on
    blank = Document("z", text, layers={"gold": [Span(0, 5, "SYMPTOM", "fever"), Span(6, 7, "SYMPTOM", "\u200b")]})
    _, st = build_features([blank], tok, DEFAULT_LABELS, "gold", 64, 16)
    assert (st.untaggable, st.misaligned, dict(st.spans)) == (1, 0, {"SYMPTOM": 1})
    odd = Document("o", "took ibuprofen", layers={"gold": [Span(5, 14, "DRUG", "ibuprofen")]})
    with pytest.raises(TrainingDataError, match="DRUG"):
        build_features([odd], tok, DEFAULT_LABELS, "gold", 64, 16)
    soft = agg.SoftTargets(["O", "B-X", "I-X"])
    with pytest.raises(TrainingDataError, match="tags"):
        build_features(docs, tok, DEFAULT_LABELS, "gold", 64, 16, soft=soft)
    soft = agg.SoftTargets(TAGS)
    with pytest.raises(TrainingDataError, match="no soft targets"):
        build_features(docs, tok, DEFAULT_LABELS, "gold", 64, 16, soft=soft)
    # overlapping spans in the training layer: the longest is kept, the others counted
    first = docs[0].spans("gold")[0]
    other = next(l for l in DEFAULT_LABELS if l != first.label)
    over = docs[0].with_layers(gold=[*docs[0].spans("gold"), docs[0].span(first.start, first.end, other)])
    _, st2 = build_features([over], tok, DEFAULT_LABELS, "gold", 64, 16)
    assert st2.overlaps_resolved == 1


def test_train_student_rejects_bad_input(tmp_path, docs):
    with pytest.raises(TrainingDataError, match="no training documents"):
        train_student([], tmp_path / "x", TrainConfig(**TINY), model_factory=tiny_factory)
    with pytest.raises(TrainingDataError, match="soft targets"):
        train_student(docs, tmp_path / "x", TrainConfig(loss="kd", **TINY), model_factory=tiny_factory)
    with pytest.raises(TrainingDataError, match="layer"):
        train_student(docs, tmp_path / "x", TrainConfig(**TINY), layer="silver", model_factory=tiny_factory)
    with pytest.raises(ValueError, match="loss"):
        train_student(docs, tmp_path / "x", TrainConfig(loss="mse", **TINY), model_factory=tiny_factory)


# --- training ----------------------------------------------------------------------------------


def test_tiny_model_loss_falls_and_model_dir_is_complete(tmp_path, docs, dev_docs):
    model, tok = tiny_factory(len(TAGS), dict(enumerate(TAGS)), {t: i for i, t in enumerate(TAGS)})
    feats, _ = build_features(docs, tok, DEFAULT_LABELS, "gold", 64, 16)
    before = mean_loss(model, feats)
    res = train_student(docs, tmp_path / "m", TrainConfig(max_steps=30, **TINY), dev_docs=dev_docs,
                        model_factory=tiny_factory, progress=False)
    out = res.out_dir
    trained = BertForTokenClassification.from_pretrained(str(out))
    after = mean_loss(trained, feats)
    assert after < 0.6 * before, (before, after)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["id2label"]["1"] == "B-MEDICATION" and cfg["label2id"]["I-SYMPTOM"] == 6
    assert tagging.read_labels_json(out)["tags"] == TAGS
    assert (out / "tokenizer.json").is_file() and (out / "training_card.md").is_file()
    card = json.loads((out / "training_card.json").read_text())
    assert card["stages"]["gold"]["global_step"] == 30 and card["scores"]["dev"]["relaxed_f1"] >= 0.0
    assert card["stages"]["gold"]["dev_history"], "evaluated on dev each epoch"
    assert not (out / "checkpoints").exists()  # cleaned after success
    saved = tagging.load_tokenizer(out)
    assert saved.truncation is None  # long notes are windowed by us, never cut by the tokenizer


def test_tiny_model_learns_from_soft_targets(tmp_path, docs):
    noisy = [d.with_layers(a=d.spans("gold"), b=[s for i, s in enumerate(d.spans("gold")) if s.label != "SYMPTOM" or i % 2])
             for d in docs]
    res = agg.aggregate(noisy, ["a", "b"], "union")
    model, tok = tiny_factory(len(TAGS), dict(enumerate(TAGS)), {t: i for i, t in enumerate(TAGS)})
    feats, _ = build_features(res.docs, tok, DEFAULT_LABELS, "silver", 64, 16, soft=res.soft)
    assert "soft_targets" in feats[0]
    soft_rows = np.concatenate([f["soft_targets"][f["labels"] >= 0] for f in feats])
    assert (soft_rows.max(1) < 1.0).any(), "the disagreement shows up as soft mass"
    before = mean_loss(model, feats)
    out = train_student(res.docs, tmp_path / "kd", TrainConfig(max_steps=30, loss="kd", temperature=2.0,
                                                                 kd_alpha=0.8, **TINY),
                        soft=res.soft, model_factory=tiny_factory, progress=False).out_dir
    after = mean_loss(BertForTokenClassification.from_pretrained(str(out)), feats)
    assert after < 0.7 * before, (before, after)
    assert json.loads((out / "training_card.json").read_text())["loss"] == "kd"


class Crash(Exception):
    pass


class CrashAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        raise Crash(f"killed at step {state.global_step}")


def test_killed_run_resumes_from_its_checkpoint(tmp_path, docs):
    cfg = TrainConfig(epochs=2, **TINY)
    with pytest.raises(Crash):
        train_student(docs, tmp_path / "r", cfg, model_factory=tiny_factory, progress=False,
                      callbacks=[CrashAfterFirstSave()])
    ckpts = sorted(p.name for p in (tmp_path / "r" / "checkpoints").glob("checkpoint-*"))
    assert len(ckpts) == 1
    res = train_student(docs, tmp_path / "r", cfg, model_factory=tiny_factory, progress=False)
    stage = res.card["stages"]["gold"]
    assert stage["resumed_from"] == ckpts[0]
    steps_per_epoch = int(ckpts[0].split("-")[1])
    assert stage["global_step"] == 2 * steps_per_epoch
    with pytest.raises(Crash):  # a different config must not silently reuse those checkpoints
        train_student(docs, tmp_path / "r2", cfg, model_factory=tiny_factory, progress=False,
                      callbacks=[CrashAfterFirstSave()])
    with pytest.raises(TrainingDataError, match="different"):
        train_student(docs, tmp_path / "r2", TrainConfig(epochs=3, **TINY), model_factory=tiny_factory, progress=False)
    relabelled = [docs[0].with_layers(gold=docs[0].spans("gold")[1:]), *docs[1:]]  # same ids, other labels
    with pytest.raises(TrainingDataError, match=r"different \['data_sha256'\]"):
        train_student(relabelled, tmp_path / "r2", cfg, model_factory=tiny_factory, progress=False)


def test_gold_stage_runs_its_own_epochs_and_belongs_to_its_first_stage(tmp_path, docs, dev_docs):
    """max_steps caps the first stage only; the gold stage's checkpoints are refused after the first
    stage changed (deleting the first stage's checkpoints must not resurrect the old model)."""
    gold = [d.with_layers() for d in dev_docs]
    cfg = TrainConfig(epochs=1, max_steps=1, gold_epochs=2, **TINY)
    res = train_student(docs[:2], tmp_path / "g", cfg, gold_docs=gold, model_factory=tiny_factory, progress=False,
                        keep_checkpoints=True)
    gold_windows = res.card["data"]["gold_features"]["windows"]
    assert res.card["stages"]["silver" if "silver" in res.card["stages"] else "gold"]["global_step"] == 1
    assert res.card["stages"]["gold_finetune"]["global_step"] == 2 * -(-gold_windows // TINY["batch_size"])
    assert res.card["data"]["gold_finetune_documents"] == len(gold)
    import shutil

    shutil.rmtree(tmp_path / "g" / "checkpoints")
    with pytest.raises(TrainingDataError, match=r"checkpoints-gold holds checkpoints of a run with different \['stage1_sha256'\]"):
        train_student(docs[:3], tmp_path / "g", cfg, gold_docs=gold, model_factory=tiny_factory, progress=False)
    res = train_student(docs[:2], tmp_path / "g2", TrainConfig(epochs=1, max_steps=1, **TINY), gold_docs=gold,
                        model_factory=tiny_factory, progress=False)
    assert "gold_finetune" not in res.card["stages"] and res.card["data"]["gold_finetune_documents"] == 0


# --- base models -------------------------------------------------------------------------------


def test_offline_default_base_model_is_the_verified_minilm(monkeypatch, tmp_path):
    path = base_models.resolve_base_model("minilm")
    assert path == base_models.resolve_base_model("offline-default") == base_models.resolve_base_model(None)
    assert json.loads((base_models.minilm_dir() / "config.json").read_text())["hidden_size"] == 384
    assert base_models.resolve_base_model(base_models.ONLINE_DEFAULT) == "dmis-lab/biobert-base-cased-v1.2"
    with pytest.raises(base_models.BaseModelError, match="does not exist"):
        base_models.resolve_base_model(str(tmp_path / "nowhere"))
    with pytest.raises(base_models.BaseModelError, match="config.json"):
        base_models.resolve_base_model(str(tmp_path))
    monkeypatch.setattr(base_models, "MINILM_SHA256", "0" * 64)
    monkeypatch.setattr(base_models, "_verified", {})
    with pytest.raises(base_models.BaseModelError, match="SHA-256"):
        base_models.resolve_base_model("minilm")


def test_new_head_gets_its_own_learning_rate(tmp_path, docs):
    from students.train import _trainer_class, _training_args

    model, tok = tiny_factory(len(TAGS), dict(enumerate(TAGS)), {t: i for i, t in enumerate(TAGS)})
    feats, _ = build_features(docs[:1], tok, DEFAULT_LABELS, "gold", 64, 16)
    args = _training_args(tmp_path, TrainConfig(**TINY), 1e-3, 1.0, False, False)
    trainer = _trainer_class()(model=model, args=args, train_dataset=feats, data_collator=Collator(0),
                               head_lr_multiplier=10.0)
    opt = trainer.create_optimizer()
    lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr[id(model.classifier.weight)] == pytest.approx(1e-2)
    assert lr[id(model.bert.embeddings.word_embeddings.weight)] == pytest.approx(1e-3)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_long_epochs_can_checkpoint_every_n_steps(tmp_path):
    from students.train import _training_args

    args = _training_args(tmp_path, TrainConfig(eval_steps=50, **TINY), 1e-3, 1.0, True, False)
    assert (args.save_strategy, args.save_steps, args.eval_strategy, args.eval_steps) == ("steps", 50, "steps", 50)
    args = _training_args(tmp_path, TrainConfig(**TINY), 1e-3, 1.0, True, False)
    assert (args.save_strategy, args.eval_strategy) == ("epoch", "epoch") and args.load_best_model_at_end


@pytest.mark.parametrize("args,message", [
    (["--gold", "maccrobat:dev"], "give it --gold-epochs > 0"),
    (["--gold-epochs", "2"], "--gold-epochs needs --gold"),
    (["--temperature", "2"], "only apply with --loss kd"),
])
def test_cli_train_refuses_options_that_would_be_ignored(tmp_path, args, message):
    from typer.testing import CliRunner

    from distill.cli import app

    res = CliRunner().invoke(app, ["train", "--train", "maccrobat:train", "--out", str(tmp_path / "m"), *args])
    assert res.exit_code == 2 and message in res.output and not (tmp_path / "m").exists()
