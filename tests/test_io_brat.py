"""BRAT reader against the real MACCROBAT and Chia files, plus hand-written malformed folders."""
from __future__ import annotations

import zipfile
from collections import Counter

import pytest

from distill.documents import DISEASE, MEDICATION, SYMPTOM, label_counts
from distill.io.brat import read_brat
from distill.io.jsonl import FormatError
from distill.io.report import ReadReport

MACCROBAT_MAP = {"Sign_symptom": SYMPTOM, "Disease_disorder": DISEASE, "Medication": MEDICATION}


@pytest.fixture(scope="module")
def maccrobat_all(shared_data):
    report = ReadReport()
    docs = list(read_brat(shared_data / "maccrobat2020" / "brat", None, report=report))
    return docs, report


def test_maccrobat_counts_match_source_md(shared_data):
    report = ReadReport()
    docs = list(read_brat(shared_data / "maccrobat2020" / "brat", MACCROBAT_MAP, report=report))
    assert len(docs) == 140
    assert sorted(d.id for d in docs) == sorted((shared_data / "maccrobat2020" / "doc_ids.txt").read_text().split())
    assert label_counts(docs) == {SYMPTOM: 2417, DISEASE: 925, MEDICATION: 751}
    assert report.kept == Counter({SYMPTOM: 2417, DISEASE: 925, MEDICATION: 751})
    # the other 38 types are dropped but counted, never silently
    assert sum(report.dropped_types.values()) == 17539 - 2417 - 925 - 751
    assert report.dropped_types["Diagnostic_procedure"] == 3226
    assert report.n_problems == 0
    assert "Diagnostic_procedure 3,226" in report.summary()


def test_maccrobat_all_types_fragments_attributes_and_skipped_lines(maccrobat_all):
    docs, report = maccrobat_all
    spans = [s for d in docs for s in d.spans("gold")]
    assert len(spans) == 17539
    assert sum(1 for s in spans if s.fragments) == 31
    # relations and notes counted (SOURCE.md: 11,377 relations, 210 AnnotatorNotes)
    assert report.skipped_lines["relation (R)"] == 11377
    assert report.skipped_lines["note (#)"] == 210
    # POLARITY is attached through the E line: 742 NEG of 894 POLARITY; TREND 89
    attrs = Counter((k, v) for s in spans for k, v in s.attributes.items())
    assert attrs[("polarity", "NEG")] == 742 == attrs[("negated", True)]
    assert sum(n for (k, _), n in attrs.items() if k == "polarity") == 894
    assert sum(n for (k, _), n in attrs.items() if k == "trend") == 89


def test_maccrobat_known_spans(maccrobat_all):
    docs, _ = maccrobat_all
    by_id = {d.id: d for d in docs}
    disc = [s for s in by_id["17803823"].spans() if s.start == 1366 and s.end == 1404][0]
    assert disc.fragments == ((1366, 1373), (1386, 1404))
    assert disc.text == "without rebound tenderness"
    assert by_id["17803823"].text[1366:1404] != disc.text  # the gap really is skipped
    neg = [s for s in by_id["15939911"].spans() if s.negated]
    assert [(s.start, s.end, s.label, s.text) for s in neg] == [(1631, 1643, "Sign_symptom", "palpitations")]
    assert neg[0].attributes["polarity"] == "NEG"


def test_chia_zip_crlf_offsets_and_reported_mismatches(shared_data):
    report = ReadReport()
    docs = list(read_brat(shared_data / "chia" / "chia_without_scope.zip", None, on_mismatch="report", report=report))
    assert len(docs) == 2000
    kept = sum(report.kept.values())
    assert kept >= 44602
    assert kept + report.problems["span text mismatch"] + report.problems["offsets out of range"] == 44616
    assert report.n_problems == 44616 - kept == 14
    examples = report.examples["span text mismatch"]
    assert examples and all("chia_without_scope.zip!" in e and ".ann:" in e for e in examples)
    assert "span text mismatch: 14" in report.summary()
    # CRLF is kept: many texts contain \r\n and spans after them still line up
    assert sum(1 for d in docs if "\r\n" in d.text) == 1603


def test_chia_mismatch_raises_by_default(shared_data):
    with pytest.raises(FormatError, match=r"\.ann:\d+: T\d+ .* says"):
        list(read_brat(shared_data / "chia" / "chia_without_scope.zip"))


# --- hand-written folders -------------------------------------------------------------------

def _write(folder, name, text, ann):
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.txt").write_bytes(text.encode("utf-8"))
    if ann is not None:
        (folder / f"{name}.ann").write_text(ann, encoding="utf-8")


def test_handmade_events_attributes_fragments_crlf(tmp_path):
    text = "No fever.\r\nTook aspirin and low dose heparin."
    ann = (
        "T1\tSign_symptom 3 8\tfever\n"
        "E1\tSign_symptom:T1 \n"
        "A1\tPOLARITY E1 NEG\n"
        "T2\tMedication 16 23\taspirin\n"
        "M1\tUncertain T2\n"
        "T3\tMedication 28 31;37 44\tlow heparin\n"
        "R1\tMODIFY Arg1:T2 Arg2:T3\t\n"
        "*\tOverlap T2 T3\n"
        "#1\tAnnotatorNotes T1\tnote\n"
        "N1\tReference T2 RxNorm:1191\taspirin\n"
        "T4\tAge 0 2\tNo\n"
    )
    _write(tmp_path, "d1", text, ann)
    report = ReadReport()
    (doc,) = read_brat(tmp_path, {"Sign_symptom": SYMPTOM, "Medication": MEDICATION}, report=report)
    fever, aspirin, heparin = doc.spans("gold")
    assert (fever.text, fever.negated, fever.attributes["polarity"]) == ("fever", True, "NEG")
    assert (aspirin.start, aspirin.text, aspirin.attributes) == (16, "aspirin", {"uncertain": True})
    assert (heparin.start, heparin.end, heparin.fragments, heparin.text) == (28, 44, ((28, 31), (37, 44)), "low heparin")
    assert report.dropped_types == Counter({"Age": 1})
    assert report.skipped_lines == Counter({"relation (R)": 1, "equivalence (*)": 1, "note (#)": 1, "normalization (N)": 1})


def test_fragments_listed_out_of_order_are_checked_in_file_order(tmp_path):
    _write(tmp_path, "d", "medical illness here", "T1\tCondition 8 15;0 7\tillness medical\n")
    (doc,) = read_brat(tmp_path)
    (s,) = doc.spans()
    assert s.fragments == ((0, 7), (8, 15)) and s.text == "medical illness"


@pytest.mark.parametrize(
    "ann, reason",
    [
        ("T1\tSign_symptom 0 5\n", "T line needs 3 tab-separated columns"),
        ("T1\tSign_symptom 0 x\tfever\n", "bad offsets"),
        ("T1\tSign_symptom 5 0\tfever\n", "empty or reversed"),
        ("T1\tSign_symptom\tfever\n", "needs 'Type start end'"),
        ("T1\tSign_symptom 0 5\tfever\nT1\tSign_symptom 0 5\tfever\n", "duplicate entity id"),
        ("T1\tSign_symptom 0 5\tfever\nA1\tPOLARITY E9 NEG\n", "points at unknown id 'E9'"),
        ("T1\tSign_symptom 0 5\tfever\nQ1\twhat\n", "unknown brat line type"),
        ("T1\tSign_symptom 0 50\tfever\n", "out of range"),
        ("T1\tSign_symptom 0 5\tfaver\n", "says 'faver' but the text there is 'fever'"),
    ],
)
def test_malformed_ann_names_file_line_and_reason(tmp_path, ann, reason):
    _write(tmp_path, "bad", "fever and cough", ann)
    with pytest.raises(FormatError) as e:
        list(read_brat(tmp_path))
    msg = str(e.value)
    assert reason in msg
    assert "bad.ann" in msg


def test_error_names_the_line_number(tmp_path):
    _write(tmp_path, "bad", "fever and cough", "T1\tSign_symptom 0 5\tfever\n\nT2\tSign_symptom 10 x\tcough\n")
    with pytest.raises(FormatError, match=r"bad\.ann:3: bad offsets"):
        list(read_brat(tmp_path))


def test_mismatch_report_policy_keeps_going_and_counts(tmp_path):
    _write(tmp_path, "a", "fever and cough", "T1\tSign_symptom 0 5\tfaver\nT2\tSign_symptom 10 15\tcough\nT3\tSign_symptom 10 99\tcough\n")
    report = ReadReport()
    (doc,) = read_brat(tmp_path, on_mismatch="report", report=report)
    assert [s.text for s in doc.spans()] == ["cough"]
    assert report.problems == Counter({"span text mismatch": 1, "offsets out of range": 1})
    assert "a.ann:1" in report.examples["span text mismatch"][0]
    with pytest.raises(ValueError, match="on_mismatch"):
        list(read_brat(tmp_path, on_mismatch="ignore"))


def test_missing_txt_is_an_error_and_missing_ann_is_reported(tmp_path):
    (tmp_path / "orphan.ann").write_text("T1\tX 0 1\ta\n")
    with pytest.raises(FormatError, match="orphan.ann: no matching text file"):
        list(read_brat(tmp_path))
    (tmp_path / "orphan.ann").unlink()
    _write(tmp_path, "notes_only", "just text", None)
    report = ReadReport()
    (doc,) = read_brat(tmp_path, report=report)
    assert doc.spans("gold") == [] and report.problems["text without .ann (empty layer)"] == 1
    with pytest.raises(FileNotFoundError, match="brat corpus not found"):
        list(read_brat(tmp_path / "nope"))


def test_zip_and_select(tmp_path):
    zpath = tmp_path / "c.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("c/a.txt", b"pain\r\nfever")
        zf.writestr("c/a.ann", "T1\tSign_symptom 6 11\tfever\n")
        zf.writestr("c/b.txt", b"cough")
        zf.writestr("c/b.ann", "T1\tSign_symptom 0 5\tcough\n")
    docs = list(read_brat(zpath))
    assert [d.id for d in docs] == ["a", "b"]
    assert docs[0].spans()[0].start == 6  # CRLF counted as two characters
    assert [d.id for d in read_brat(zpath, select=lambda i: i == "b")] == ["b"]


def test_non_utf8_text_is_a_format_error(tmp_path):
    tmp_path.joinpath("x.txt").write_bytes(b"caf\xe9")
    tmp_path.joinpath("x.ann").write_text("")
    with pytest.raises(FormatError, match="x.txt: not UTF-8"):
        list(read_brat(tmp_path))


def test_write_brat_round_trips_real_maccrobat_and_chia(shared_data, tmp_path):
    """Offsets, discontinuous fragments, negation and CRLF texts survive write -> read."""
    from distill.io.brat import write_brat

    mac = list(read_brat(shared_data / "maccrobat2020" / "brat", MACCROBAT_MAP, select=lambda i: i < "16"))
    chia = list(read_brat(shared_data / "chia" / "chia_without_scope.zip", None, on_mismatch="report",
                          select=lambda i: i < "NCT002"))
    assert any("\r\n" in d.text for d in chia) and any(s.fragments for d in chia for s in d.spans("gold"))
    for docs, name in ((mac, "mac"), (chia, "chia")):
        assert write_brat(docs, tmp_path / name) == len(docs) > 0
        back = {d.id: d for d in read_brat(tmp_path / name, None)}
        for d in docs:
            key = lambda spans: sorted((s.start, s.end, s.label, s.fragments, s.negated) for s in spans)  # noqa: E731
            assert back[d.id].text == d.text
            assert key(back[d.id].spans("gold")) == key(d.spans("gold"))


def test_convert_to_brat_and_a_misspelt_layer(shared_data, tmp_path):
    from typer.testing import CliRunner

    from distill.cli import app

    src = shared_data / "maccrobat2020" / "brat"
    bad = CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "b"), "--to", "brat", "--layer", "glod"])
    assert bad.exit_code == 2 and "no document has a layer 'glod'" in bad.output
    assert not (tmp_path / "b").exists()
    ok = CliRunner().invoke(app, ["convert", "maccrobat", str(tmp_path / "b"), "--to", "brat", "--split", "dev",
                                  "--data-dir", str(shared_data)])
    assert ok.exit_code == 0, ok.output
    assert len(list(read_brat(tmp_path / "b", None))) == 30


def test_subfolders_are_read_and_duplicate_names_are_an_error(tmp_path):
    for sub, doc in (("train", "x"), ("test", "y")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / f"{doc}.txt").write_text("fever", encoding="utf-8")
        (tmp_path / sub / f"{doc}.ann").write_text("T1\tSign_symptom 0 5\tfever\n", encoding="utf-8")
    assert [d.id for d in read_brat(tmp_path, None)] == ["x", "y"]
    (tmp_path / "test" / "x.txt").write_text("fever", encoding="utf-8")
    with pytest.raises(FormatError, match="two documents named 'x'"):
        list(read_brat(tmp_path, None))
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as zf:
        for name in ("train/x.txt", "test/x.txt"):
            zf.writestr(name, "fever")
    with pytest.raises(FormatError, match="two documents named 'x'"):
        list(read_brat(tmp_path / "c.zip", None))
