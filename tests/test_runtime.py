"""The torch-free ONNX runtime: no torch import, batching invariance, dispatch, clear errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_export import exported  # noqa: F401 - session fixture: one export shared by the modules

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "Patient with type 2 diabetes on metformin reports nausea and headache. " * 12,
    "No complaints.",
    "",
    "Fever, cough and shortness of breath; started on amoxicillin for pneumonia.",
]


def test_runtime_never_imports_torch_or_transformers(exported):  # noqa: F811
    _, out, _ = exported
    code = (
        "import sys\n"
        "from students.runtime import load_onnx_predictor\n"
        f"p = load_onnx_predictor({str(out)!r}, int8=True, threads=1)\n"
        "spans = p.predict_texts(['Aspirin for chest pain.', 'Metformin for diabetes.'])\n"
        "assert len(spans) == 2\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]


def test_length_bucketing_does_not_change_predictions(exported):  # noqa: F811
    from students.runtime import OnnxPredictor

    _, out, _ = exported
    one = OnnxPredictor(out / "model.onnx", batch_size=1, docs_per_chunk=1).predict_texts(TEXTS)
    many = OnnxPredictor(out / "model.onnx", batch_size=16, threads=1).predict_texts(TEXTS)
    reversed_ = OnnxPredictor(out / "model.onnx", batch_size=3).predict_texts(TEXTS[::-1])[::-1]
    key = lambda res: [[(s.start, s.end, s.label) for s in d] for d in res]  # noqa: E731
    assert key(one) == key(many) == key(reversed_)
    assert one[2] == []  # an empty note has no spans
    assert sum(map(len, one)) > 0
    for text, spans in zip(TEXTS, one):
        assert all(text[s.start : s.end] == s.text for s in spans)


def test_int8_spans_do_not_depend_on_the_other_notes(exported):  # noqa: F811
    """Dynamic int8 scales activations per batch; batching per note keeps a note's spans its own."""
    from students.runtime import OnnxPredictor

    _, out, _ = exported
    p = OnnxPredictor(out / "model.int8.onnx", batch_size=16)
    assert p.quantized and not OnnxPredictor(out / "model.onnx").quantized
    key = lambda res: [[(s.start, s.end, s.label) for s in d] for d in res]  # noqa: E731
    together = key(p.predict_texts(TEXTS))
    assert together == key(p.predict_texts(TEXTS[::-1]))[::-1]
    assert together == [key(p.predict_texts([t]))[0] for t in TEXTS]


def test_threads_and_providers_are_configurable(exported):  # noqa: F811
    from students.runtime import OnnxPredictor

    _, out, _ = exported
    p = OnnxPredictor(out / "model.int8.onnx", threads=1, providers=["CPUExecutionProvider"])
    assert p.session.get_session_options().intra_op_num_threads == 1
    assert p.session.get_providers() == ["CPUExecutionProvider"] and p.device == "cpu"


def test_predict_dispatches_onnx_paths_to_the_runtime(exported):  # noqa: F811
    from students.predict import TorchPredictor, load_predictor
    from students.runtime import OnnxPredictor

    model, out, _ = exported
    assert isinstance(load_predictor(out), OnnxPredictor)
    int8 = load_predictor(out / "model.int8.onnx")
    assert isinstance(int8, OnnxPredictor) and int8.path.name == "model.int8.onnx"
    assert isinstance(load_predictor(model), TorchPredictor)


def _copy(out: Path, dest: Path, *skip: str) -> Path:
    shutil.copytree(out, dest, ignore=shutil.ignore_patterns(*skip) if skip else None)
    return dest


def test_corrupt_onnx_file(tmp_path, exported):  # noqa: F811
    from students.runtime import OnnxModelError, OnnxPredictor

    _, out, _ = exported
    d = _copy(out, tmp_path / "corrupt", "export.json")
    (d / "model.onnx").write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(OnnxModelError, match="is not a loadable ONNX model"):
        OnnxPredictor(d / "model.onnx")


def test_truncated_or_swapped_onnx_file_is_caught_by_the_export_card(tmp_path, exported):  # noqa: F811
    from students.runtime import OnnxModelError, OnnxPredictor

    _, out, _ = exported
    d = _copy(out, tmp_path / "swapped")
    data = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxModelError, match="replaced or truncated"):
        OnnxPredictor(d / "model.onnx")
    shutil.copy(d / "model.int8.onnx", d / "model.onnx")
    with pytest.raises(OnnxModelError, match="replaced or truncated|SHA-256"):
        OnnxPredictor(d / "model.onnx")


def test_onnx_model_mismatched_with_labels_json(tmp_path, exported):  # noqa: F811
    from students.runtime import OnnxModelError, OnnxPredictor

    _, out, _ = exported
    d = _copy(out, tmp_path / "mismatch", "export.json", "config.json")  # so only the output count can catch it
    meta = json.loads((d / "labels.json").read_text())
    tagging_labels = meta["labels"][:2]
    from students.tagging import write_labels_json

    write_labels_json(d, tagging_labels, meta["max_length"], meta["stride"])
    with pytest.raises(OnnxModelError, match="predicts 7 tags but .* lists 5"):
        OnnxPredictor(d)  # a directory resolves to model.onnx inside it


def _swap_labels(d: Path) -> None:
    """Another student's labels.json: same tag count, labels in another order."""
    from students.tagging import write_labels_json

    meta = json.loads((d / "labels.json").read_text())
    write_labels_json(d, meta["labels"][::-1], meta["max_length"], meta["stride"])


def test_swapped_labels_json_is_caught_by_card_and_by_config(tmp_path, exported):  # noqa: F811
    from students.runtime import OnnxModelError, OnnxPredictor

    _, out, _ = exported
    d = _copy(out, tmp_path / "card")
    _swap_labels(d)
    with pytest.raises(OnnxModelError, match=r"labels\.json does not match the SHA-256 recorded in .*export\.json.*"
                                             r"restore labels\.json"):
        OnnxPredictor(d / "model.int8.onnx")
    no_card = _copy(out, tmp_path / "no_card", "export.json")
    _swap_labels(no_card)
    with pytest.raises(OnnxModelError, match=r"labels\.json lists tags .* but .*config\.json id2label gives"):
        OnnxPredictor(no_card)
    assert OnnxPredictor(no_card, verify=False).tags[1] == "B-SYMPTOM"  # the documented opt-out


def test_tokenizer_from_another_model_is_rejected(tmp_path, exported):  # noqa: F811
    from tokenizers import AddedToken, Tokenizer

    from students.runtime import OnnxModelError, OnnxPredictor

    _, out, _ = exported
    for name, skip in (("card", ()), ("no_card", ("export.json",))):
        d = _copy(out, tmp_path / name, *skip)
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        tok.add_tokens([AddedToken("metforminxr", normalized=True)])  # id 30522: past the embedding table
        tok.save(str(d / "tokenizer.json"))
        want = r"tokenizer\.json has \d+ bytes but .*export\.json" if skip == () else \
            r"tokenizer\.json has 30523 tokens but .*config\.json has vocab_size 30522"
        with pytest.raises(OnnxModelError, match=want):
            OnnxPredictor(d / "model.onnx")


def test_max_length_beyond_position_embeddings_is_an_error_not_an_onnxruntime_crash(tmp_path, exported):  # noqa: F811
    from students.runtime import OnnxModelError, OnnxPredictor
    from students.tagging import write_labels_json

    _, out, _ = exported
    d = _copy(out, tmp_path / "long", "export.json")
    meta = json.loads((d / "labels.json").read_text())
    write_labels_json(d, meta["labels"], 256, meta["stride"])  # the tiny model has 128 positions
    with pytest.raises(OnnxModelError, match=r"max_length 256 but .*config\.json allows 128 positions"):
        OnnxPredictor(d / "model.onnx")


def test_int8_only_directory_and_bad_batch_size(tmp_path, exported):  # noqa: F811
    from typer.testing import CliRunner

    from distill.cli import app
    from students.predict import load_predictor
    from students.runtime import OnnxModelError, OnnxPredictor, is_onnx_model

    _, out, _ = exported
    d = _copy(out, tmp_path / "int8_only", "model.onnx")
    assert is_onnx_model(d)
    p = load_predictor(d, threads=1)
    assert isinstance(p, OnnxPredictor) and p.path.name == "model.int8.onnx" and p.quantized
    notes = tmp_path / "notes.jsonl"
    notes.write_text(json.dumps({"id": "a", "text": TEXTS[3]}) + "\n")
    res = CliRunner().invoke(app, ["predict", "--model", str(d), "--input", str(notes), "--output",
                                   str(tmp_path / "p.jsonl"), "--no-progress"])
    assert res.exit_code == 0, res.output
    with pytest.raises(OnnxModelError, match="batch_size must be at least 1, got 0"):
        OnnxPredictor(out, batch_size=0)
    res = CliRunner().invoke(app, ["predict", "--model", str(d), "--input", str(notes), "--output",
                                   str(tmp_path / "p.jsonl"), "--batch-size", "-1"])
    assert res.exit_code == 2 and "--batch-size must be at least 1" in res.output


def test_missing_tokenizer_and_missing_model(tmp_path, exported):  # noqa: F811
    from students.runtime import OnnxModelError, OnnxPredictor, load_onnx_predictor

    _, out, _ = exported
    d = _copy(out, tmp_path / "notok", "tokenizer.json")
    with pytest.raises(OnnxModelError, match="tokenizer.json"):
        OnnxPredictor(d / "model.onnx")
    with pytest.raises(OnnxModelError, match="does not exist"):
        OnnxPredictor(tmp_path / "nothing.onnx")
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(OnnxModelError, match="export the model first"):
        load_onnx_predictor(empty, int8=True)


def test_cli_predict_with_onnx_and_empty_notes_file(tmp_path, exported):  # noqa: F811
    from typer.testing import CliRunner

    from distill.cli import app
    from distill.io.jsonl import read_jsonl

    _, out, _ = exported
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    preds = tmp_path / "preds.jsonl"
    res = CliRunner().invoke(app, ["predict", "--model", str(out / "model.int8.onnx"), "--input", str(notes),
                                   "--output", str(preds), "--threads", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    got = list(read_jsonl(preds, entities_layer="pred"))
    assert [d.id for d in got] == ["0", "1", "2", "3"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    res = CliRunner().invoke(app, ["predict", "--model", str(out), "--input", str(empty), "--output", str(preds)])
    assert res.exit_code == 2 and "contains no notes" in res.output
