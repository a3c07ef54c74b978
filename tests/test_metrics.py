import evaluate
import pytest

import distill.span_f1
from distill.documents import Document, Span
from distill.metrics import score

TEXT = "Chest pain and fever after aspirin; diabetes mellitus noted."


def doc(spans, layer="gold", doc_id="d1", text=TEXT):
    d = Document(doc_id, text)
    d.set_layer(layer, [Span(s, e, l, text[s:e]) for s, e, l in spans])
    return d


GOLD = [(0, 10, "SYMPTOM"), (15, 20, "SYMPTOM"), (27, 34, "MEDICATION"), (36, 53, "DISEASE")]


def test_gold_against_itself_is_perfect(shared_data):
    from distill.corpora import load_corpus

    docs = load_corpus("maccrobat", shared_data)
    for m in ("exact", "relaxed"):
        rep = score(docs, docs, pred_layer="gold", match=m, bootstrap=0)
        assert rep.micro.f1 == 1.0 and rep.macro_f1 == 1.0
        assert rep.micro.support == 2417 + 925 + 751


def test_exact_vs_relaxed():
    pred = doc([(6, 10, "SYMPTOM"), (15, 20, "SYMPTOM"), (27, 34, "DISEASE"), (36, 44, "DISEASE")], "pred")
    exact = score([doc(GOLD)], [pred], pred_layer="pred", match="exact", bootstrap=0)
    relaxed = score([doc(GOLD)], [pred], pred_layer="pred", match="relaxed", bootstrap=0)
    assert (exact.micro.tp, exact.micro.fp, exact.micro.fn) == (1, 3, 3)
    # "pain" overlaps "Chest pain"; "diabetes" overlaps "diabetes mellitus"; aspirin has the wrong label
    assert (relaxed.micro.tp, relaxed.micro.fp, relaxed.micro.fn) == (3, 1, 1)
    assert relaxed.labels["MEDICATION"].recall == 0.0
    assert relaxed.labels["SYMPTOM"].f1 == 1.0


def test_relaxed_is_one_to_one_and_duplicates_count_once():
    # one long prediction covering two gold symptoms can only claim one of them
    pred = doc([(0, 20, "SYMPTOM"), (0, 20, "SYMPTOM")], "pred")
    rep = score([doc(GOLD[:2])], [pred], pred_layer="pred", match="relaxed", bootstrap=0)
    assert (rep.micro.tp, rep.micro.fp, rep.micro.fn) == (1, 0, 1)


def test_missing_documents_and_unknown_labels_are_reported():
    gold = [doc(GOLD, doc_id="a"), doc(GOLD, doc_id="b")]
    pred = [doc([(0, 10, "SYMPTOM"), (27, 34, "DRUG")], "pred", doc_id="a")]
    rep = score(gold, pred, pred_layer="pred", bootstrap=0)
    assert rep.problems["missing_documents"] == {"count": 1, "examples": ["b"]}
    assert rep.problems["unknown_labels"] == {"DRUG": 1}
    assert rep.micro.fn == 7 and rep.micro.tp == 1 and rep.micro.fp == 1


def test_bootstrap_ci_width_on_a_known_case():
    # 10 documents: 5 perfectly predicted, 5 with nothing predicted -> micro F1 = 2/3 overall
    gold = [doc(GOLD[:1], doc_id=str(i)) for i in range(10)]
    pred = [doc(GOLD[:1] if i < 5 else [], "pred", doc_id=str(i)) for i in range(10)]
    rep = score(gold, pred, pred_layer="pred", bootstrap=2000, seed=1)
    lo, hi = rep.micro.f1_ci
    assert rep.micro.f1 == pytest.approx(2 / 3)
    # each resample has k ~ Binomial(10, .5) hits: F1 = 2k/(k+10) -> 95% CI ~ [0.4, 0.86]
    assert 0.3 <= lo <= 0.5 and 0.8 <= hi <= 0.9
    same = score(gold, gold, bootstrap=500)
    assert same.micro.f1_ci == (1.0, 1.0)


def test_local_evaluate_module_matches_metrics():
    met = evaluate.load(distill.span_f1.PATH)
    refs = [[{"start": s, "end": e, "label": l} for s, e, l in GOLD]]
    preds = [[{"start": 6, "end": 10, "label": "SYMPTOM"}, {"start": 15, "end": 20, "label": "SYMPTOM"}]]
    out = met.compute(predictions=preds, references=refs, match="relaxed")
    assert out["precision"] == 1.0 and out["recall"] == 0.5
    assert out["SYMPTOM_f1"] == 1.0


def _doc(doc_id, text, **layers):
    return Document(doc_id, text, {}, {k: [Span(a, b, lab, text[a:b], k) for a, b, lab in v] for k, v in layers.items()})


def test_duplicate_ids_and_a_misspelt_layer_are_errors_not_zero_scores():
    gold = [_doc("x", "aspirin", gold=[(0, 7, "MEDICATION")]), _doc("x", "fever", gold=[(0, 5, "SYMPTOM")])]
    with pytest.raises(ValueError, match="two gold documents have the id 'x'"):
        score(gold, [_doc("x", "aspirin", pred=[])], pred_layer="pred")
    pred = [_doc("x", "aspirin", silver=[(0, 7, "MEDICATION")])]
    with pytest.raises(ValueError, match="no prediction document has a layer 'silvr'; layers present: \\['silver'\\]"):
        score(gold[:1], pred, pred_layer="silvr")
    assert score(gold[:1], pred, pred_layer="silver", bootstrap=0).micro.f1 == 1.0


def test_gold_labels_outside_the_label_set_are_reported():
    gold = [_doc("a", "aspirin for fever", gold=[(0, 7, "Medication"), (12, 17, "SYMPTOM")])]
    rep = score(gold, [_doc("a", "aspirin for fever", pred=[(12, 17, "SYMPTOM")])], bootstrap=0)
    assert rep.micro.support == 1 and rep.micro.f1 == 1.0
    assert rep.problems["gold_labels_not_scored"] == {"count": 1, "examples": ["Medication (1)"]}


def test_relaxed_matching_is_maximum_not_greedy():
    """Greedy by overlap would give the long prediction to the long gold span and leave [10, 12)
    unmatched; the maximum matching pairs [0, 3) with [0, 10) and [5, 12) with [10, 12)."""
    text = "x" * 20
    gold = [_doc("a", text, gold=[(0, 10, "DISEASE"), (10, 12, "DISEASE")])]
    pred = [_doc("a", text, pred=[(5, 12, "DISEASE"), (0, 3, "DISEASE")])]
    rep = score(gold, pred, pred_layer="pred", match="relaxed", bootstrap=0)
    assert (rep.micro.tp, rep.micro.fp, rep.micro.fn) == (2, 0, 0)


def test_maximum_matching_agrees_with_exhaustive_search():
    import random
    from functools import lru_cache

    from distill.metrics import _max_matching

    rnd = random.Random(0)
    for _ in range(500):
        ng, npred = rnd.randint(0, 6), rnd.randint(0, 6)
        pairs = [(-rnd.randint(1, 5), i, j) for i in range(ng) for j in range(npred) if rnd.random() < 0.4]
        edges = {(i, j) for _, i, j in pairs}

        @lru_cache(None)
        def best(i: int, used: int) -> int:
            if i == ng:
                return 0
            options = [1 + best(i + 1, used | 1 << j) for j in range(npred) if not used >> j & 1 and (i, j) in edges]
            return max([best(i + 1, used), *options])

        assert _max_matching(ng, pairs) == best(0, 0)
