"""End to end: `distill run` on bundled data with a tiny student built here (random weights)."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.manifest import MANIFEST

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

RECIPE = """
name = "tiny"
output_dir = "{out}"
[data]
data_dir = "{data}"
notes = [{{ corpus = "maccrobat", split = "train", limit = 4 }}, {{ corpus = "ncbi_disease", split = "train", limit = 4 }}]
dev = {{ corpus = "maccrobat", split = "dev", limit = 3 }}
test = [{{ corpus = "maccrobat", split = "test", limit = 4 }}]
human_train = {{ corpus = "maccrobat", split = "train", limit = 4 }}
[[teachers]]
spec = "ontology:open"
[aggregate]
method = "weighted"
[student]
base_model = "{base}"
targets = "soft"
options = {{ epochs = 1, max_length = 64, stride = 16, batch_size = 8 }}
[bench]
max_docs = 3
options = {{ repeats = 1, warmup_docs = 1, latency_docs = 2, bootstrap = 20 }}
"""


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer random BERT with MiniLM's real tokenizer: the real loading code, in seconds."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from students.base_models import minilm_dir

    out = tmp_path_factory.mktemp("tiny_base")
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def run(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


def test_run_writes_report_then_skips_and_forces(tmp_path, tiny_base):
    out = tmp_path / "run"
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE.format(out=out, data=ROOT / "experiments" / "data", base=tiny_base))

    run(["run", str(recipe)])
    for f in ("report/report.md", "report/report.html", "report/results.json", "train/labels.json",
              "export/train/model.int8.onnx", "export/train_human/model.onnx", "aggregate/silver.jsonl"):
        assert (out / f).is_file(), f
    results = json.loads((out / "report" / "results.json").read_text())
    names = [s["name"] for s in results["systems"]]
    assert names[0] == "ontology:open"
    assert any("distilled" in n and "int8" in n for n in names) and any("human" in n for n in names)
    assert results["recipe"]["labelling"]["ontology:open"]["documents"] == 8
    assert "<script src" not in (out / "report" / "report.html").read_text()

    # a rerun reuses every finished step
    label_manifest = (out / "label" / MANIFEST).read_text()
    second = run(["run", str(recipe)])
    assert second.count("(manifest matches), skipped") == 8 and "running" not in second
    assert (out / "label" / MANIFEST).read_text() == label_manifest

    # an output edited by hand is not trusted: that step and the ones after it run again
    bench = out / "bench" / "results.json"
    bench.write_text(bench.read_text() + " ")
    third = run(["run", str(recipe)])
    assert "bench: running (output" in third and "report: running" in third and "label: up to date" in third

    # --from forces a step and everything after it, but not what came before
    fourth = run(["run", str(recipe), "--from", "export"])
    assert "export: running (forced" in fourth and "train: up to date" in fourth


def test_self_training_and_compressed_student_are_recipe_steps(tmp_path, tiny_base):
    """One self-training round (threshold picked on dev) feeds the final student at train/, and a
    1-layer student distilled from it is exported and benched as its own row."""
    out = tmp_path / "run"
    recipe = tmp_path / "tiny.toml"
    text = RECIPE.format(out=out, data=ROOT / "experiments" / "data", base=tiny_base).replace(
        'targets = "soft"', 'targets = "hard"\nhuman_baseline = false').replace('method = "weighted"', 'method = "majority"')
    recipe.write_text(text + "[self_training]\nrounds = 1\n[compress]\nlayers = 1\noptions = { epochs = 1 }\n")
    output = run(["run", str(recipe)])
    assert "self_train: running" in output and "compress: running" in output
    manifest = json.loads((out / "self_train" / MANIFEST).read_text())
    (rnd,) = manifest["summary"]["rounds"]
    assert rnd["threshold"] in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95) and set(rnd["dev_f05_by_threshold"]) 
    assert (out / "self_train" / "silver.jsonl").is_file() and (out / "train" / "labels.json").is_file()
    card = json.loads((out / "compress" / "training_card.json").read_text())
    assert card["base_model"]["layers_kept"] == [0] and card["loss"] == "kd"
    assert json.loads((out / "compress" / "config.json").read_text())["num_hidden_layers"] == 1
    names = [s["name"] for s in json.loads((out / "bench" / "results.json").read_text())["systems"]]
    assert any("1 layers" in n for n in names)
    # the final student is a model directory that `distill predict` loads
    notes = out / "notes" / "notes.jsonl"
    run(["predict", "--model", str(out / "train"), "--input", str(notes), "--output", str(tmp_path / "p.jsonl")])
    assert (tmp_path / "p.jsonl").stat().st_size > 0
