"""`--engine ray`: the same teacher and student on Ray Data actors give the plain path's spans, note by note.

The workers are checked directly (fast, no Ray cluster); the end-to-end tests start a local Ray
(``ray.init(num_cpus=2)``) once for the module and compare whole output files span by span.
"""
from __future__ import annotations

import json
import pickle

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.corpora import load_corpus
from distill.documents import Document
from distill.io.jsonl import read_jsonl, write_jsonl
from distill.ray_engine import EngineError, PredictWorker, RayEngine, TeacherWorker
from students.predict import predict_file
from teachers.base import label_corpus
from teachers.registry import make_teacher
from tests.fake_llm_servers import FakeOpenAIServer
from tests.test_export import make_student


@pytest.fixture(scope="module")
def notes(shared_data, tmp_path_factory):
    """Eight real notes in reverse order, then an empty one (written first by label_corpus, never sent)."""
    docs = [Document(d.id, d.text) for d in load_corpus("maccrobat", shared_data, split="test")[:8]]
    docs = docs[::-1] + [Document("empty-note", "")]
    path = tmp_path_factory.mktemp("notes") / "notes.jsonl"
    write_jsonl(docs, path)
    return path


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return make_student(tmp_path_factory.mktemp("student") / "m")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'clinical-distill[ray]'")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def _batch(docs: list[Document]) -> pa.Table:
    return pa.table({"id": [d.id for d in docs], "text": [d.text for d in docs]})


def _results(table: pa.Table) -> list[tuple]:
    return [pickle.loads(b) for b in table.column("result").to_pylist()]


def _span_rows(path, layer: str) -> list[tuple]:
    """Every span of every note, in file order, with all fields (score, concept, attributes too)."""
    return [(d.id, s.start, s.end, s.label, s.text, s.source, s.score, s.concept, dict(s.attributes))
            for d in read_jsonl(path) for s in d.layers.get(layer, [])]


def test_teacher_worker_labels_like_the_teacher(notes):
    docs = [d for d in read_jsonl(notes) if d.text]
    out = TeacherWorker("ontology:open", False, {})(_batch(docs))
    assert out.column("id").to_pylist() == [d.id for d in docs]
    results = _results(out)
    assert all(error is None for _, error in results)
    plain = list(make_teacher("ontology:open").label(docs))
    assert [spans for (spans, _, _), _ in results] == plain
    assert sum(len(s) for s in plain) > 0
    usage = results[0][0][1]
    assert usage.documents == len(docs) and all(u is None for (_, u, _), _ in results[1:])  # counted once


def test_worker_failures_become_errors_for_every_note():
    docs = [Document("a", "aspirin"), Document("b", "fever")]
    results = _results(TeacherWorker("ontology:open", False, {"colour": "red"})(_batch(docs)))
    assert [r for r, _ in results] == [None, None]
    assert all(isinstance(e, ValueError) and "colour" in str(e) for _, e in results)
    results = _results(PredictWorker("/nonexistent/model", 8, {})(_batch(docs)))
    assert all(isinstance(e, FileNotFoundError) for _, e in results)


def test_engine_options_are_checked(notes, tmp_path):
    r = CliRunner().invoke(app, ["label", "--teacher", "ontology:open", "--input", str(notes), "--out",
                                 str(tmp_path / "o.jsonl"), "--engine", "spark"])
    assert r.exit_code == 2 and "unknown --engine 'spark'" in r.output
    r = CliRunner().invoke(app, ["label", "--teacher", "ontology:open", "--input", str(notes), "--out",
                                 str(tmp_path / "o.jsonl"), "--ray-address", "auto"])
    assert r.exit_code == 2 and "need --engine ray" in r.output
    with pytest.raises(EngineError, match="at least 1"):
        RayEngine(batch_notes=0)


def test_label_through_ray_matches_the_plain_path(local_ray, notes, tmp_path):
    args = ["label", "--teacher", "ontology:open", "--input", str(notes), "--no-progress"]
    r = CliRunner().invoke(app, args + ["--out", str(tmp_path / "plain.jsonl")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, args + ["--out", str(tmp_path / "ray.jsonl"), "--engine", "ray", "--ray-actors", "2"])
    assert r.exit_code == 0, r.output
    # small batches: several blocks on two actors, returned in input order
    teacher = RayEngine(actors=2, batch_notes=2).teacher("ontology:open")
    result = label_corpus(teacher, list(read_jsonl(notes)), tmp_path / "small.jsonl", progress=False)
    assert result.labelled == 9 and not result.failed
    plain = _span_rows(tmp_path / "plain.jsonl", "ontology:open")
    assert len(plain) > 20
    for other in ("ray.jsonl", "small.jsonl"):
        assert _span_rows(tmp_path / other, "ontology:open") == plain
        assert (tmp_path / other).read_text() == (tmp_path / "plain.jsonl").read_text()  # same order, same records
    ledger = json.loads((tmp_path / "small.jsonl.usage.json").read_text())
    assert ledger["teacher"] == "ontology:open" and ledger["usage"]["documents"] == 9


def test_llm_failures_and_ledger_through_ray_match_the_plain_path(local_ray, tmp_path):
    """An LLM teacher (a loopback OpenAI-compatible fake) that cannot read one note: the failure is
    recorded for that note, not dropped, and tokens and stats add up to the plain run's."""
    docs = [Document("a", "Asthma, on salbutamol."), Document("b", "Fever and BROKEN cough."),
            Document("c", "No asthma."), Document("d", "Fever again.")]
    with FakeOpenAIServer({"asthma": "DISEASE", "salbutamol": "MEDICATION", "fever": "SYMPTOM"}) as srv:
        srv.rules["BROKEN"] = "malformed"
        opts = {"base_url": srv.base_url, "cache": "false"}
        plain_t = make_teacher("local:qwen", **opts)
        plain = label_corpus(plain_t, docs, tmp_path / "plain.jsonl", progress=False)
        ray_t = RayEngine(actors=2, batch_notes=1).teacher("local:qwen", **opts)
        on_ray = label_corpus(ray_t, docs, tmp_path / "ray.jsonl", progress=False)
    assert list(plain.failed) == list(on_ray.failed) == ["b"] and plain.failed == on_ray.failed
    assert (tmp_path / "ray.jsonl").read_text() == (tmp_path / "plain.jsonl").read_text()
    assert (tmp_path / "ray.jsonl.failures.jsonl").read_text() == (tmp_path / "plain.jsonl.failures.jsonl").read_text()
    usage = [{k: v for k, v in r.usage.to_dict().items() if k != "seconds"} for r in (plain, on_ray)]
    assert usage[0] == usage[1] and usage[0]["requests"] == 4 and usage[0]["input_tokens"] > 0
    assert ray_t.summary()["stats"] == plain_t.summary()["stats"]


def test_predict_through_ray_matches_the_plain_path(local_ray, notes, student, tmp_path):
    n = predict_file(student, notes, tmp_path / "plain.jsonl", progress=False)
    assert predict_file(student, notes, tmp_path / "ray.jsonl", engine=RayEngine(actors=2, batch_notes=3)) == n == 9
    plain = _span_rows(tmp_path / "plain.jsonl", "pred")
    assert len(plain) > 20  # random weights predict many spans: a strict comparison
    assert _span_rows(tmp_path / "ray.jsonl", "pred") == plain  # scores included
    assert (tmp_path / "ray.jsonl").read_text() == (tmp_path / "plain.jsonl").read_text()
    assert [d.id for d in read_jsonl(tmp_path / "ray.jsonl")] == [d.id for d in read_jsonl(notes)]


def test_predict_errors_on_the_actors_are_one_line_cli_errors(local_ray, notes, tmp_path):
    (tmp_path / "not_a_model").mkdir()
    r = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / "not_a_model"), "--input", str(notes),
                                 "--output", str(tmp_path / "p.jsonl"), "--engine", "ray", "--no-progress"])
    assert r.exit_code == 2, r.output
    assert "is not a student model directory" in r.output
    assert not (tmp_path / "p.jsonl").exists()
