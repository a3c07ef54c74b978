"""Aggregation of teacher layers: methods, weights, soft targets, bad input, and the CLI verb."""
from __future__ import annotations

import random

import numpy as np
import pytest
from typer.testing import CliRunner

from distill import aggregate as agg
from distill.cli import app
from distill.corpora import load_corpus
from distill.documents import Document, Span
from distill.io.jsonl import write_jsonl
from distill.metrics import score


def doc_with(text: str, **layers: list[tuple[str, str]]) -> Document:
    """Layers given as (phrase, label) pairs; the first occurrence of the phrase is used."""
    out = {}
    for name, items in layers.items():
        out[name] = [Span(text.index(p), text.index(p) + len(p), lab, p) for p, lab in items]
    return Document("d1", text, layers=out)


TEXT = "Started aspirin for chest pain due to coronary artery disease."


def test_majority_needs_more_than_half_of_the_teachers_that_cover_a_label():
    d = doc_with(TEXT,
                 a=[("aspirin", "MEDICATION"), ("chest pain", "SYMPTOM")],
                 b=[("aspirin", "MEDICATION"), ("coronary artery disease", "DISEASE")],
                 c=[("chest pain", "SYMPTOM"), ("coronary artery disease", "DISEASE")])
    res = agg.aggregate([d], ["a", "b", "c"], "majority")
    got = {(s.text, s.label) for s in res.docs[0].spans("silver")}
    assert got == {("aspirin", "MEDICATION"), ("chest pain", "SYMPTOM"), ("coronary artery disease", "DISEASE")}
    # without c: b never emits SYMPTOM, so its silence on 'chest pain' is no vote against it
    res = agg.aggregate([d.with_layers(c=[])], ["a", "b", "c"], "majority")
    got = {(s.text, s.label) for s in res.docs[0].spans("silver")}
    assert got == {("aspirin", "MEDICATION"), ("chest pain", "SYMPTOM"), ("coronary artery disease", "DISEASE")}
    # once b does emit SYMPTOM (elsewhere), a alone against b's silence is a tie -> O
    d2 = doc_with(TEXT, a=[("aspirin", "MEDICATION"), ("chest pain", "SYMPTOM")],
                  b=[("aspirin", "MEDICATION"), ("disease", "SYMPTOM")])
    res = agg.aggregate([d2], ["a", "b"], "majority")
    assert {(s.text, s.label) for s in res.docs[0].spans("silver")} == {("aspirin", "MEDICATION")}


def test_union_and_priority_resolve_cross_teacher_overlaps():
    d = doc_with(TEXT, a=[("chest pain", "SYMPTOM")], b=[("pain", "SYMPTOM"), ("aspirin", "MEDICATION")],
                 c=[("coronary artery disease", "DISEASE")])
    union = agg.aggregate([d], ["b", "a", "c"], "union")
    assert [s.text for s in union.docs[0].spans("silver")] == ["aspirin", "chest pain", "coronary artery disease"]
    assert union.log.cross_teacher_conflicts == 1
    prio = agg.aggregate([d], ["b", "a", "c"], "priority")
    assert [s.text for s in prio.docs[0].spans("silver")] == ["aspirin", "pain", "coronary artery disease"]
    assert prio.log.cross_teacher_conflicts == 1
    assert all(s.source == "silver" for s in prio.docs[0].spans("silver"))


def test_soft_targets_are_distributions_and_reflect_votes(tmp_path):
    d = doc_with(TEXT, a=[("chest pain", "SYMPTOM")], b=[("chest pain", "SYMPTOM")], c=[("pain", "SYMPTOM")])
    res = agg.aggregate([d], ["a", "b", "c"], "majority")
    offsets, probs = res.soft.docs["d1"]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    words = [TEXT[a:b] for a, b in offsets]
    tags = res.soft.tags
    chest, pain, started = probs[words.index("chest")], probs[words.index("pain")], probs[words.index("Started")]
    assert started[0] == 1.0
    assert chest[tags.index("B-SYMPTOM")] == pytest.approx(2 / 3)  # 2 of 3 say B; c says O here
    assert pain[tags.index("I-SYMPTOM")] == pytest.approx(2 / 3) and pain[tags.index("B-SYMPTOM")] == pytest.approx(1 / 3)
    path = res.soft.save(agg.soft_targets_path(tmp_path / "silver.jsonl"))
    assert path.name == "silver.soft.npz"
    back = agg.SoftTargets.load(path)
    assert back.tags == tags
    np.testing.assert_array_equal(back.docs["d1"][0], offsets)
    np.testing.assert_allclose(back.docs["d1"][1], probs, atol=1e-3)  # stored as float16


def noisy_layers(docs: list[Document], seed: int = 0) -> list[Document]:
    """'good' drops 10% of gold; 'noisy' drops 50% and adds wrong-label copies; 'meds' = gold meds only."""
    rng = random.Random(seed)
    out = []
    for d in docs:
        gold = d.spans("gold")
        good = [s for s in gold if rng.random() > 0.1]
        noisy = [s for s in gold if rng.random() > 0.5]
        noisy += [s.with_label("DISEASE") for s in gold if s.label == "SYMPTOM" and rng.random() < 0.5]
        noisy, _ = agg.longest_first(noisy)
        meds = [s for s in gold if s.label == "MEDICATION"]
        out.append(d.with_layers(good=good, noisy=noisy, meds=meds))
    return out


@pytest.fixture(scope="module")
def maccrobat_layers(shared_data):
    return noisy_layers(load_corpus("maccrobat", shared_data, split="dev"))


def test_weighted_trusts_the_precise_teacher(maccrobat_layers):
    dev, rest = maccrobat_layers[:10], maccrobat_layers[10:]
    w = agg.estimate_weights(dev, ["good", "noisy", "meds"])
    assert w["good"]["SYMPTOM"].precision > w["noisy"]["SYMPTOM"].precision
    assert w["meds"]["DISEASE"].recall == 0.0  # never emits DISEASE: its silence is no evidence
    f1 = {}
    for method in agg.METHODS:
        res = agg.aggregate(rest, ["good", "noisy", "meds"], method, weights=w)
        f1[method] = score(res.docs, res.docs, pred_layer="silver", match="exact", bootstrap=0).micro.f1
        assert res.log.silver_spans > 0
    assert f1["weighted"] > f1["majority"] and f1["weighted"] > 0.85
    agreement = agg.agreement(res.docs, ["good", "noisy", "meds"])
    assert agreement["good"]["f1"] > agreement["noisy"]["f1"]


def test_identical_teachers_reproduce_the_layer_exactly(maccrobat_layers):
    docs = [d.with_layers(x=d.spans("good"), y=d.spans("good")) for d in maccrobat_layers]
    res = agg.aggregate(docs, ["x", "y"], "majority")
    a = agg.agreement(res.docs, ["x"])["x"]
    assert a["exact_f1"] == pytest.approx(1.0, abs=0.005)  # only the few non-word-aligned spans move
    assert res.log.widened <= 4


def test_bad_input_errors_and_counts():
    d = doc_with(TEXT, a=[("aspirin", "DRUG"), ("chest pain", "SYMPTOM")], b=[("chest pain", "SYMPTOM"), ("pain", "SYMPTOM")])
    with pytest.raises(agg.AggregationError, match="DRUG"):
        agg.aggregate([d], ["a", "b"], "majority")
    res = agg.aggregate([d], ["a", "b"], "majority", on_unknown="drop")
    assert res.log.unknown_labels == {"a:DRUG": 1}
    assert res.log.overlaps_resolved == {"b": 1}  # 'pain' inside 'chest pain' in one layer
    assert any("unknown labels dropped" in line for line in res.log.lines())
    with pytest.raises(agg.AggregationError, match="no documents"):
        agg.aggregate([], ["a"], "majority")
    with pytest.raises(agg.AggregationError, match="layer"):
        agg.aggregate([d], ["zzz"], "majority")
    with pytest.raises(agg.AggregationError, match="weights"):
        agg.aggregate([d], ["b"], "weighted")
    with pytest.raises(agg.AggregationError, match="method"):
        agg.aggregate([d], ["b"], "vote")
    with pytest.raises(agg.AggregationError):
        agg.SoftTargets.load(__file__)


def test_cli_aggregate_writes_silver_and_soft_targets(tmp_path, maccrobat_layers):
    docs = maccrobat_layers[:12]
    files = []
    for name in ("good", "noisy", "meds"):
        p = tmp_path / f"{name}.jsonl"
        write_jsonl([Document(d.id, d.text, layers={name: d.spans(name)}) for d in docs], p)
        files += ["-i", str(p)]
    gold = tmp_path / "dev.jsonl"
    write_jsonl([Document(d.id, d.text, layers={n: d.spans(n) for n in ("gold", "good", "noisy", "meds")}) for d in docs[:5]], gold)
    out = tmp_path / "silver.jsonl"
    r = CliRunner().invoke(app, ["aggregate", *files, "--layers", "good,noisy,meds", "--method", "weighted",
                                 "--dev", str(gold), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "agreement" in r.output and "good" in r.output
    assert out.is_file() and (tmp_path / "silver.soft.npz").is_file()
    r = CliRunner().invoke(app, ["aggregate", *files, "--layers", "good,noisy", "--method", "weighted", "--out", str(out)])
    assert r.exit_code == 2 and "--dev" in r.output


def test_overlap_counts_do_not_depend_on_document_order():
    text = "chest pain"
    with_overlap = Document("d1", text, {}, {"a": [Span(0, 10, "SYMPTOM", text, "a"), Span(6, 10, "SYMPTOM", "pain", "a")]})
    without = Document("d2", text, {}, {"a": [Span(6, 10, "SYMPTOM", "pain", "a")]})
    for docs in ([with_overlap, without], [without, with_overlap]):
        assert agg.aggregate(docs, ["a"], "union").log.overlaps_resolved == {"a": 1}


def test_weights_need_a_gold_layer_on_the_dev_documents():
    dev = [Document("d", "fever", {}, {"a": [Span(0, 5, "SYMPTOM", "fever", "a")]})]
    with pytest.raises(agg.AggregationError, match="none of the 1 dev documents has a gold layer 'gold'"):
        agg.estimate_weights(dev, ["a"])


def test_majority_ignores_weights_and_threshold_must_be_a_share():
    """Weights shape only the soft targets: a teacher with recall 0 on dev still votes 'no' under
    majority (a 1-1 tie stays O). A threshold outside [0, 1) is an error, not all-or-nothing tags."""
    text = "Patient has fever and cough."
    doc = Document("d", text, {}, {"A": [Span(22, 27, "DISEASE", "cough", "A")],
                                    "B": [Span(12, 17, "DISEASE", "fever", "B")]})
    weights = {"A": {lab: agg.LabelWeight(0.5, 0.0) for lab in agg.DEFAULT_LABELS},
               "B": {lab: agg.LabelWeight(1.0, 1.0) for lab in agg.DEFAULT_LABELS}}
    plain = agg.aggregate([doc], ["A", "B"], "majority")
    weighted = agg.aggregate([doc], ["A", "B"], "majority", weights=weights)
    assert plain.docs[0].spans("silver") == weighted.docs[0].spans("silver") == []
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(agg.AggregationError, match="threshold must be in"):
            agg.aggregate([doc], ["A", "B"], "majority", threshold=bad)
