"""`distill predict` gives every span an assertion and, where the lexicon has the term, a concept."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from distill.cli import app
from distill.documents import ASSERTIONS
from ontologies.linker import Linker
from tests.test_export import exported  # noqa: F401 - session fixture: one export shared by the modules

NOTES = [{"id": "a", "text": "Patient denies chest pain. Mother had type 2 diabetes mellitus. Started metformin."},
         {"id": "b", "text": "History of asthma; rule out pneumonia. Fever and cough since Monday."}]


def run_predict(exported, tmp_path, *extra):  # noqa: F811
    _, out, _ = exported
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps(n) + "\n" for n in NOTES))
    preds = tmp_path / "preds.jsonl"
    res = CliRunner().invoke(app, ["predict", "--model", str(out), "--input", str(notes), "--output", str(preds),
                                   "--no-progress", *extra])
    return res, preds


def test_predict_output_carries_assertion_and_concept(exported, tmp_path):  # noqa: F811
    res, preds = run_predict(exported, tmp_path)
    assert res.exit_code == 0, res.output
    ents = [e for line in preds.read_text().splitlines() for e in json.loads(line)["entities"]]
    assert ents and all(e["assertion"] in ASSERTIONS for e in ents)
    linker = Linker.from_config("open")
    for e in ents:  # random weights: whatever spans came out, each is linked as the linker links it
        hit = linker.link(e["text"], e["label"])
        assert e.get("concept") == (hit.concept if hit else None)
    assert "spans linked to concepts" in res.output


def test_predict_without_enrichment_and_with_a_bad_lexicon(exported, tmp_path):  # noqa: F811
    res, preds = run_predict(exported, tmp_path, "--no-assertion", "--lexicon", "none")
    assert res.exit_code == 0, res.output
    ents = [e for line in preds.read_text().splitlines() for e in json.loads(line)["entities"]]
    assert ents and not any("assertion" in e or "concept" in e for e in ents)
    res, _ = run_predict(exported, tmp_path, "--lexicon", "nosuchlexicon")
    assert res.exit_code == 2 and "unknown lexicon part 'nosuchlexicon'" in res.output
