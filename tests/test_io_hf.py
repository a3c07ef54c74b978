"""Documents <-> datasets.Dataset round trip, on real MACCROBAT and on hand-made layered docs."""
from __future__ import annotations

import pytest

from distill.corpora import load_corpus
from distill.documents import Document, Span, SpanError
from distill.io.hf import from_dataset, to_dataset


def _full(s: Span):
    return (s.start, s.end, s.label, s.text, s.source, s.score, s.concept, s.fragments, dict(s.attributes))


def _same(a: list[Document], b: list[Document]) -> None:
    assert [d.id for d in a] == [d.id for d in b]
    for x, y in zip(a, b):
        assert (x.text, x.meta, sorted(x.layers)) == (y.text, y.meta, sorted(y.layers))
        for name in x.layers:
            assert [_full(s) for s in x.layers[name]] == [_full(s) for s in y.layers[name]]


def test_maccrobat_round_trip_keeps_fragments_and_negation(shared_data):
    docs = load_corpus("maccrobat", shared_data)
    ds = to_dataset(docs, "gold")
    assert ds.num_rows == 140 and ds.column_names == ["id", "text", "meta", "gold"]
    assert sum(len(r["start"]) for r in ds["gold"]) == 2417 + 925 + 751
    back = from_dataset(ds)
    _same(docs, back)
    assert sum(1 for d in back for s in d.spans() if s.negated) == sum(1 for d in docs for s in d.spans() if s.negated) > 0


def test_layers_scores_concepts_and_unlabelled(tmp_path):
    doc = Document("n1", "Aspirin for headache.", {"specialty": ["Neurology"], "n": 1})
    doc.set_layer("gold", [doc.span(0, 7, "MEDICATION"), doc.span(12, 20, "SYMPTOM", attributes={"negated": False})])
    doc.set_layer("openai:x", [doc.span(0, 7, "MEDICATION", score=0.9, concept="RXCUI:1191")])
    empty = Document("n2", "Nothing here.", {}, {"gold": [], "openai:x": []})
    docs = [doc, empty]
    ds = to_dataset(docs, ["gold", "openai:x"])
    _same(docs, from_dataset(ds))
    # survives Arrow on disk too
    ds.save_to_disk(str(tmp_path / "ds"))
    from datasets import load_from_disk

    _same(docs, from_dataset(load_from_disk(str(tmp_path / "ds"))))
    notes = to_dataset(docs, None)
    assert notes.column_names == ["id", "text", "meta"]
    assert [d.layers for d in from_dataset(notes)] == [{}, {}]
    only_gold = from_dataset(ds, layers=["gold"])
    assert list(only_gold[0].layers) == ["gold"]


def test_errors_are_clear():
    doc = Document("n1", "fever")
    with pytest.raises(KeyError, match="has no layer 'gold'"):
        to_dataset([doc], "gold")
    with pytest.raises(ValueError, match="clash"):
        to_dataset([doc], "text")
    from datasets import Dataset

    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['text'\]"):
        from_dataset(Dataset.from_dict({"id": ["a"]}))
    with pytest.raises(ValueError, match="no layer column"):
        from_dataset(Dataset.from_dict({"id": ["a"], "text": ["fever"]}), layers=["gold"])
    bad = Dataset.from_dict({"id": ["a"], "text": ["fever"], "gold": [[{"start": 0, "end": 5, "label": "SYMPTOM", "text": "cough"}]]})
    with pytest.raises(SpanError, match="says 'cough' but the text there is 'fever'"):
        from_dataset(bad)
