"""The Dawid–Skene label model: learned teacher accuracies without gold, no dilution by teachers
that abstain, missing layers that cast no vote, and clear errors on input it cannot fit."""
from __future__ import annotations

import random

import numpy as np
import pytest

from distill import aggregate as agg
from distill.documents import Document, Span
from distill.metrics import score

WORDS = ["fever", "cough", "aspirin", "asthma", "rash", "heparin", "gout", "nausea", "the", "patient", "was",
         "given", "with", "and", "history", "of", "noted", "on", "day", "two"]
TRUE = {"fever": "SYMPTOM", "cough": "SYMPTOM", "rash": "SYMPTOM", "nausea": "SYMPTOM", "aspirin": "MEDICATION",
        "heparin": "MEDICATION", "asthma": "DISEASE", "gout": "DISEASE"}


def synthetic(n_docs: int, seed: int = 0) -> list[Document]:
    """Notes of random words with four teachers: 'good' (recall .9, rare false hits), 'fair'
    (recall .75, 5% false hits), 'noisy' (recall .6, labels 15% of plain words), 'drugs'
    (medications only, precise). Three independent sources per label make the model identifiable."""
    rng = random.Random(seed)
    docs = []
    for i in range(n_docs):
        words = [rng.choice(WORDS) for _ in range(40)]
        text = " ".join(words)
        pos, layers = 0, {"gold": [], "good": [], "fair": [], "noisy": [], "drugs": []}
        for w in words:
            s, e = pos, pos + len(w)
            pos = e + 1
            lab = TRUE.get(w)
            if lab:
                layers["gold"].append(Span(s, e, lab, w))
                if rng.random() < 0.9:
                    layers["good"].append(Span(s, e, lab, w))
                if rng.random() < 0.75:
                    layers["fair"].append(Span(s, e, lab, w))
                if rng.random() < 0.6:
                    layers["noisy"].append(Span(s, e, lab, w))
                if lab == "MEDICATION":
                    layers["drugs"].append(Span(s, e, lab, w))
            else:
                if rng.random() < 0.02:
                    layers["good"].append(Span(s, e, "DISEASE", w))
                if rng.random() < 0.05:
                    layers["fair"].append(Span(s, e, rng.choice(["SYMPTOM", "DISEASE"]), w))
                if rng.random() < 0.15:
                    layers["noisy"].append(Span(s, e, rng.choice(["SYMPTOM", "DISEASE"]), w))
        docs.append(Document(f"d{i}", text, layers=layers))
    return docs


def f1(docs: list[Document], layer: str = "silver") -> float:
    return score(docs, docs, gold_layer="gold", pred_layer=layer, match="exact", bootstrap=0).micro.f1


def test_label_model_learns_who_to_trust_and_beats_majority():
    docs = synthetic(60)
    layers = ["good", "fair", "noisy", "drugs"]
    lm = agg.aggregate(docs, layers, "label_model")
    maj = agg.aggregate(docs, layers, "majority")
    assert f1(lm.docs) > f1(maj.docs) + 0.02
    assert f1(lm.docs) >= f1(docs, "good") - 0.01  # at least as good as its best teacher
    lines = "\n".join(lm.log.lines())
    assert "label model: good SYMPTOM" in lines and "label model: noisy DISEASE" in lines
    # soft targets are distributions
    for offs, probs in lm.soft.docs.values():
        assert np.allclose(probs.sum(1), 1.0, atol=1e-3)


def test_a_teacher_that_abstains_on_a_label_does_not_dilute_it():
    docs = synthetic(60, seed=1)
    # 'drugs' never says DISEASE or SYMPTOM: with it added, the diseases 'good' finds stay
    with_drugs = agg.aggregate(docs, ["good", "fair", "noisy", "drugs"], "label_model")
    without = agg.aggregate(docs, ["good", "fair", "noisy"], "label_model")
    a = score(with_drugs.docs, with_drugs.docs, gold_layer="gold", pred_layer="silver", match="exact", bootstrap=0)
    b = score(without.docs, without.docs, gold_layer="gold", pred_layer="silver", match="exact", bootstrap=0)
    for lab in ("DISEASE", "SYMPTOM"):
        assert a.labels[lab].recall >= b.labels[lab].recall - 0.02


def test_missing_layers_cast_no_vote():
    text = "fever and cough"
    a = Document("x", text, layers={"t1": [Span(0, 5, "SYMPTOM", "fever")], "t2": [Span(10, 15, "SYMPTOM", "cough")]})
    b = Document("y", text, layers={"t1": [Span(0, 5, "SYMPTOM", "fever")]})  # t2 did not label y
    res = agg.aggregate([a, b], ["t1", "t2"], "majority")
    # in y only t1 voted: fever is a 1-of-1 majority, not a tie against t2's absent layer
    assert [s.text for s in res.docs[1].spans("silver")] == ["fever"]
    assert res.log.missing_layers["t2"] == 1


def test_label_model_refuses_one_teacher_and_empty_layers():
    docs = synthetic(5)
    with pytest.raises(agg.AggregationError, match="at least two teacher layers"):
        agg.aggregate(docs, ["good"], "label_model")
    silent = [d.with_layers(quiet=[]) for d in docs]
    with pytest.raises(agg.AggregationError, match=r"\['quiet'\] have no spans"):
        agg.aggregate(silent, ["good", "quiet"], "label_model")
