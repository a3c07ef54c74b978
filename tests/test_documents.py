import pytest

from distill.documents import Document, Span, SpanError, label_counts


def test_span_text_must_match_document():
    doc = Document("d1", "Fever and cough.")
    doc.set_layer("gold", [doc.span(0, 5, "SYMPTOM")])
    assert doc.spans("gold")[0].text == "Fever"
    with pytest.raises(SpanError, match="says 'fever' but the text there is 'Fever'"):
        doc.set_layer("gold", [Span(0, 5, "SYMPTOM", "fever")])


def test_out_of_range_and_bad_offsets_are_errors():
    with pytest.raises(SpanError, match="out of range"):
        Document("d", "abc", layers={"gold": [Span(1, 10, "DISEASE", "bc")]})
    with pytest.raises(SpanError, match="invalid span offsets"):
        Span(5, 5, "DISEASE", "")
    with pytest.raises(SpanError, match="empty label"):
        Span(0, 1, "", "a")


def test_discontinuous_fragments_join_with_a_space():
    text = "pain in the left and right knee"
    s = Span(0, 31, "SYMPTOM", "pain knee", fragments=((0, 4), (27, 31)))
    doc = Document("d", text, layers={"gold": [s]})
    assert doc.spans("gold")[0].fragments == ((0, 4), (27, 31))
    with pytest.raises(SpanError):
        Document("d", text, layers={"gold": [Span(0, 31, "SYMPTOM", "pain  knee", fragments=((0, 4), (27, 31)))]})


def test_layers_are_separate_sorted_and_sourced():
    doc = Document("d", "aspirin for headache")
    doc.set_layer("t1", [doc.span(12, 20, "SYMPTOM"), doc.span(0, 7, "MEDICATION")])
    doc2 = doc.with_layers(gold=[doc.span(0, 7, "MEDICATION")])
    assert [s.start for s in doc.spans("t1")] == [0, 12]
    assert doc.spans("t1")[0].source == "t1"
    assert "gold" not in doc.layers and "gold" in doc2.layers
    with pytest.raises(KeyError, match="no layer 'silver'"):
        doc.spans("silver")
    assert label_counts([doc], "t1") == {"MEDICATION": 1, "SYMPTOM": 1}


def test_span_dict_round_trip_keeps_attributes():
    s = Span(0, 4, "SYMPTOM", "pain", "gold", score=0.5, concept="HP:1", attributes={"negated": True})
    back = Span.from_dict(s.to_dict())
    assert back == s and back.negated and back.concept == "HP:1" and back.score == 0.5
    with pytest.raises(SpanError, match="missing the field 'label'"):
        Span.from_dict({"start": 0, "end": 1, "text": "a"})
