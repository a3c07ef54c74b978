import json

from typer.testing import CliRunner

from distill.cli import app
from distill.corpora import load_corpus
from distill.io.jsonl import write_jsonl

runner = CliRunner()


def test_evaluate_reports_bad_offsets_and_unknown_labels(shared_data, tmp_path):
    docs = load_corpus("maccrobat", shared_data, split="test")
    write_jsonl(docs, tmp_path / "gold.jsonl", flat="gold")
    lines = (tmp_path / "gold.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["entities"][0]["start"] += 1  # text no longer matches
    rec["entities"][1]["end"] = len(rec["text"]) + 50  # out of range
    rec["entities"][2]["label"] = "DRUG"
    lines[0] = json.dumps(rec)
    (tmp_path / "pred.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores.json"
    res = runner.invoke(
        app, ["evaluate", "--gold", "maccrobat", "--data-dir", str(shared_data), "--split", "test",
              "--pred", str(tmp_path / "pred.jsonl"), "--json", str(out), "--bootstrap", "50"],
    )
    assert res.exit_code == 0, res.output
    assert "invalid spans: 2" in res.output and "out of range" in res.output
    assert "DRUG (1)" in res.output
    scores = json.loads(out.read_text())
    assert scores["problems"]["invalid_spans"]["count"] == 2
    assert 0.99 < scores["exact"]["micro"]["f1"] < 1.0


def test_evaluate_malformed_file_is_a_clear_error(shared_data, tmp_path):
    bad = tmp_path / "pred.jsonl"
    bad.write_text('{"id": "x", "text": "a"}\n{not json\n')
    res = runner.invoke(app, ["evaluate", "--gold", "maccrobat", "--data-dir", str(shared_data), "--pred", str(bad)])
    assert res.exit_code == 2
    assert "pred.jsonl:2: invalid JSON" in res.output


def test_unknown_corpus_is_a_clear_error(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text("")
    res = runner.invoke(app, ["evaluate", "--gold", "nosuchcorpus", "--pred", str(p)])
    assert res.exit_code == 2 and "neither a registered corpus" in res.output


def test_an_output_path_that_is_a_folder_is_a_one_line_error(tmp_path):
    """Through the real entry point (typer would print a traceback for an uncaught OSError)."""
    import subprocess
    import sys

    notes = tmp_path / "a.jsonl"
    notes.write_text('{"id": "a", "text": "fever"}\n', encoding="utf-8")
    (tmp_path / "folder").mkdir()
    res = subprocess.run([sys.executable, "-m", "distill.cli", "convert", str(notes), str(tmp_path / "folder")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"cannot use {tmp_path / 'folder'}: Is a directory" in res.stderr.replace("\n", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "folder"]  # no temp file left


def test_evaluate_reads_offset_only_predictions_against_the_gold_text(shared_data, tmp_path):
    docs = load_corpus("maccrobat", shared_data, split="test")
    records = [{"id": d.id, "entities": [{"start": s.start, "end": s.end, "label": s.label} for s in d.spans()
                                         if not s.fragments]} for d in docs]
    records[0]["entities"][0]["end"] = len(docs[0].text) + 5  # out of range for the gold text
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "scores.json"
    res = runner.invoke(app, ["evaluate", "--gold", "maccrobat", "--data-dir", str(shared_data), "--split", "test",
                              "--pred", str(pred), "--json", str(out), "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    scores = json.loads(out.read_text())
    assert scores["problems"]["invalid_spans"]["count"] == 1 and "out of range" in res.output
    assert 0.99 < scores["exact"]["micro"]["recall"] < 1.0 and scores["exact"]["micro"]["precision"] == 1.0

    pred.write_text(json.dumps({"id": "not-in-gold", "entities": [{"start": 0, "end": 3, "label": "DISEASE"}]}) + "\n")
    res = runner.invoke(app, ["evaluate", "--gold", "maccrobat", "--data-dir", str(shared_data), "--split", "test",
                              "--pred", str(pred), "--bootstrap", "0"])
    assert res.exit_code == 2 and "'not-in-gold' has no 'text' and is not in the gold set" in res.output
