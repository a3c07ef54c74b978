"""JSONL reader/writer and the resumable appender: every bad line names file and line."""
from __future__ import annotations

import gzip
import json

import pytest

from distill.documents import Document, Span
from distill.io.jsonl import FormatError, JsonlAppender, doc_to_record, read_jsonl, write_jsonl


def _lines(path, *records):
    """One line per record: a dict is JSON-encoded, a str written as is, bytes written raw."""
    enc = lambda r: r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode("utf-8")  # noqa: E731
    path.write_bytes(b"".join(enc(r) + b"\n" for r in records))
    return path


FEVER = {"id": "a", "text": "No fever.", "entities": [{"start": 3, "end": 8, "label": "SYMPTOM", "text": "fever"}]}


def _sample_docs():
    doc = Document("n1", "Café visit.\r\nAspirin 81 mg — for pain.", {"specialty": "x"})
    doc.set_layer("gold", [doc.span(13, 20, "MEDICATION"), doc.span(34, 38, "SYMPTOM", attributes={"negated": False})])
    doc.set_layer("openai:m", [doc.span(13, 20, "MEDICATION", score=0.7, concept="RXCUI:1191")])
    disc = Document("n2", "low dose heparin")
    disc.set_layer("gold", [Span(0, 16, "MEDICATION", "low heparin", fragments=((0, 3), (9, 16)))])
    return [doc, disc]


def _check_round_trip(path):
    docs = _sample_docs()
    assert write_jsonl(docs, path) == 2
    back = list(read_jsonl(path))
    assert [d.id for d in back] == ["n1", "n2"]
    assert back[0].text == docs[0].text and back[0].meta == {"specialty": "x"}
    for layer in ("gold", "openai:m"):
        assert [s.to_dict() for s in back[0].spans(layer)] == [s.to_dict() for s in docs[0].spans(layer)]
    assert back[1].spans()[0].fragments == ((0, 3), (9, 16))
    assert not list(path.parent.glob("*.tmp"))  # atomic write left no temp file


def test_round_trip_layers_crlf_unicode(tmp_path):
    _check_round_trip(tmp_path / "out.jsonl")


def test_round_trip_gzip(tmp_path):
    _check_round_trip(tmp_path / "out.jsonl.gz")
    assert gzip.open(tmp_path / "out.jsonl.gz", "rt").readline().startswith('{"id": "n1"')


def test_flat_entities_layer_and_extra_keys_to_meta(tmp_path):
    path = _lines(tmp_path / "p.jsonl", {**FEVER, "specialty": "ED"})
    (doc,) = read_jsonl(path, entities_layer="pred")
    assert [s.text for s in doc.spans("pred")] == ["fever"] and doc.meta == {"specialty": "ED"}
    assert doc_to_record(doc, flat="pred")["entities"][0]["text"] == "fever"


@pytest.mark.parametrize(
    "bad, reason",
    [
        ('{"id": "b", "text": "x"', "invalid JSON"),
        ('["not", "an", "object"]', "expected a JSON object"),
        ({"text": "no id"}, "missing required field(s) ['id']"),
        ({"id": "b", "text": "fever", "entities": [{"start": 0, "end": 50, "label": "SYMPTOM", "text": "fever"}]}, "out of range"),
        ({"id": "b", "text": "fever", "entities": [{"start": 0, "end": 5, "label": "SYMPTOM", "text": "cough"}]}, "says 'cough' but the text there is 'fever'"),
        ({"id": "b", "text": "fever", "entities": [{"start": 3, "end": 1, "label": "SYMPTOM", "text": ""}]}, "invalid span offsets"),
        ({"id": "b", "text": "fever", "entities": [{"start": 0, "end": 5, "text": "fever"}]}, "missing the field 'label'"),
        ({"id": "b", "text": "fever", "entities": {"start": 0}}, "'entities' must be a list"),
        ({"id": "b", "text": "fever", "spans": [1]}, "'spans' must be an object"),
        ({"id": "a", "text": "again"}, "duplicate document id 'a'"),
        ({"id": "b", "text": "fever", "entities": [[0, 5, "SYMPTOM"]]}, "entities[0] must be an object"),
        ({"id": "b", "text": "fever", "meta": [1, 2]}, "'meta' must be an object"),
        ({"id": "b", "text": "fever", "spans": {"gold": {"start": 0}}}, "spans['gold'] must be a list of objects"),
        ('{"id": "b", "text": "f\xe9ver"}'.encode("latin-1"), "not UTF-8"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad, reason):
    path = _lines(tmp_path / "bad.jsonl", FEVER, "", bad)
    docs = read_jsonl(path)
    assert next(docs).id == "a"  # streaming: good lines before the bad one are read
    with pytest.raises(FormatError) as e:
        next(docs)
    assert f"{path}:3:" in str(e.value)  # blank line 2 still counts as a line
    assert reason in str(e.value)


def test_rejected_mode_keeps_good_spans_and_lists_bad_ones(tmp_path):
    rec = {"id": "b", "text": "fever", "entities": [
        {"start": 0, "end": 5, "label": "SYMPTOM", "text": "fever"},
        {"start": 0, "end": 9, "label": "SYMPTOM", "text": "fever and"},
    ]}
    rejected: list[str] = []
    (doc,) = read_jsonl(_lines(tmp_path / "p.jsonl", rec), rejected=rejected)
    assert [s.text for s in doc.spans()] == ["fever"]
    assert len(rejected) == 1 and "p.jsonl:1" in rejected[0] and "out of range" in rejected[0]


def test_appender_resumes_after_a_truncated_last_line(tmp_path):
    path = tmp_path / "silver.jsonl"
    with JsonlAppender(path) as out:
        assert out.done_ids == set()
        out.write({"id": "n1", "text": "a"})
        out.write({"id": "n2", "text": "b"})
    # a kill in the middle of the third write leaves half a line behind
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"id": "n3", "text": "c", "entit')
    with JsonlAppender(path) as out:
        assert out.done_ids == {"n1", "n2"}  # n3 is redone, not half-kept
        out.write({"id": "n3", "text": "c"})
    assert [d.id for d in read_jsonl(path)] == ["n1", "n2", "n3"]
    with JsonlAppender(path) as out:  # a clean file resumes unchanged
        assert out.done_ids == {"n1", "n2", "n3"}
    assert path.read_text(encoding="utf-8").count("\n") == 3


def test_appender_refuses_a_corrupt_middle_line(tmp_path):
    path = tmp_path / "silver.jsonl"
    path.write_text('{"id": "n1", "text": "a"}\n{broken\n{"id": "n3", "text": "c"}\n')
    with pytest.raises(FormatError, match=r"silver\.jsonl:2: unreadable record"):
        JsonlAppender(path)


def test_a_byte_order_mark_is_not_an_error(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(FEVER).encode() + b"\n")
    assert [d.id for d in read_jsonl(path)] == ["a"]


def test_offset_only_records_take_their_text_from_the_given_texts(tmp_path):
    p = tmp_path / "pred.jsonl"
    p.write_text('{"id": "a", "entities": [{"start": 0, "end": 5, "label": "SYMPTOM", "fragments": [[0, 2], [3, 5]]}, '
                 '{"start": 6, "end": 11, "label": "DISEASE", "text": "wrong"}]}\n')
    rejected: list[str] = []
    (doc,) = read_jsonl(p, "pred", rejected=rejected, texts={"a": "ab cd fever"})
    assert doc.text == "ab cd fever" and [s.text for s in doc.spans("pred")] == ["ab cd"]
    assert len(rejected) == 1 and "says 'wrong'" in rejected[0]  # a given text is still checked
    with pytest.raises(FormatError, match="missing required field"):
        list(read_jsonl(p))  # without texts, 'text' stays required
