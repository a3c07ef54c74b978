"""Self-training merges, the O-down-weighted loss, layer cutting, and student-to-student soft targets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

from distill.documents import DEFAULT_LABELS, Document, Span
from students import base_models, tagging
from students.compress import soft_targets_from_model
from students.predict import TorchPredictor
from students.self_train import add_confident_spans, pick_threshold
from students.train import TrainConfig, TrainingDataError, hard_ce, keep_layers

TAGS = tagging.bio_tags(DEFAULT_LABELS)
TEXT = "Aspirin was given for chest pain and fever."


def test_confident_student_spans_fill_only_the_silence_of_the_silver_layer():
    silver = [Document("a", TEXT, layers={"silver": [Span(0, 7, "MEDICATION", "Aspirin")]})]
    pred = [Document("a", TEXT, layers={"pred": [
        Span(0, 7, "MEDICATION", "Aspirin", score=0.99),       # overlaps silver: not added
        Span(22, 32, "SYMPTOM", "chest pain", score=0.9),      # confident, new: added
        Span(37, 42, "SYMPTOM", "fever", score=0.4)]})]         # below threshold
    out, rep = add_confident_spans(silver, pred, 0.8)
    assert [(s.text, s.source) for s in out[0].spans("silver")] == [("Aspirin", "silver"), ("chest pain", "self-train")]
    assert rep.to_dict() == {"threshold": 0.8, "added": {"SYMPTOM": 1}, "added_total": 1, "below_threshold": 1,
                             "overlapping_silver": 1}
    with pytest.raises(ValueError, match="no student prediction"):
        add_confident_spans(silver, [], 0.8)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        add_confident_spans(silver, pred, 1.5)


def test_threshold_is_picked_for_precision_on_gold_dev():
    gold = [Document("a", TEXT, layers={"gold": [Span(22, 32, "SYMPTOM", "chest pain")]})]
    pred = [Document("a", TEXT, layers={"pred": [Span(22, 32, "SYMPTOM", "chest pain", score=0.85),
                                                 Span(37, 42, "SYMPTOM", "fever", score=0.55)]})]
    best, by_t = pick_threshold(gold, pred, DEFAULT_LABELS)
    assert best == 0.6 and by_t[0.5] < by_t[0.6] == 1.0 and by_t[0.9] == 0.0
    with pytest.raises(ValueError, match="gold dev"):
        pick_threshold([], pred, DEFAULT_LABELS)


def test_o_weight_lowers_the_cost_of_predicting_an_entity_where_the_teacher_was_silent():
    logits = torch.zeros(1, 4, len(TAGS))
    logits[0, :, 1] = 3.0  # the student says B-MEDICATION everywhere
    labels = torch.tensor([[1, 0, 0, tagging.IGNORE_INDEX]])
    full, light = hard_ce(logits, labels), hard_ce(logits, labels, o_weight=0.2)
    assert float(light) < float(full)
    assert float(hard_ce(logits, labels, 1.0)) == pytest.approx(float(full))
    with pytest.raises(ValueError, match="o_weight"):
        TrainConfig(o_weight=0.0).check()


def tiny(layers: int = 4) -> tuple[BertForTokenClassification, object]:
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(base_models.minilm_dir()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=len(TAGS),
                     id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)})
    return BertForTokenClassification(cfg).eval(), tok


def test_keep_layers_spreads_from_first_to_last_and_reloads(tmp_path):
    model, tok = tiny(6)
    last = model.bert.encoder.layer[5]
    assert keep_layers(model, 3) == [0, 2, 5]
    assert model.bert.encoder.layer[2] is last and model.config.num_hidden_layers == 3
    model.save_pretrained(str(tmp_path))
    again = BertForTokenClassification.from_pretrained(str(tmp_path))
    assert len(again.bert.encoder.layer) == 3
    with pytest.raises(TrainingDataError, match="only 3"):
        keep_layers(again, 4)


def test_soft_targets_from_a_model_are_its_word_distributions(tmp_path):
    model, tok = tiny(2)
    model.save_pretrained(str(tmp_path))
    tok.save_pretrained(str(tmp_path))
    tagging.write_labels_json(tmp_path, DEFAULT_LABELS, 32, 8, pad_token_id=0)
    docs = [Document("a", TEXT), Document("b", "Heparin drip. " * 20)]
    soft = soft_targets_from_model(tmp_path, docs)
    pred = TorchPredictor.from_dir(tmp_path)
    for d in docs:
        offs, probs = soft.docs[d.id]
        enc = tagging.encode_text(pred.tokenizer, d.text, 32, 8)
        assert offs.shape == (enc.n_words, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
        # argmax of the soft targets decodes to exactly the spans the model predicts
        logits = pred._logits(enc.windows)
        words = tagging.merge_windows(enc, logits)
        assert (probs.argmax(1) == words.argmax(1)).all()
        assert tagging.decode(enc, logits, TAGS, d.text) == pred.predict_texts([d.text])[0]
