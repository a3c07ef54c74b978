"""An export interoperates with the Hugging Face stack: ``transformers.pipeline`` on the student
with the export's tokenizer and config tags tokens as the ONNX graph does, and optimum's
``ORTModelForTokenClassification`` loads the export directory itself."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_export import exported  # noqa: F401 - session fixture: one export shared by the modules

NOTE = "Patient denies chest pain; started metformin 500 mg for type 2 diabetes mellitus."


def onnx_token_tags(out, text: str) -> list[str]:
    """Per-token tags from the export's own files only: its tokenizer, model.onnx and config.json."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    tok.no_padding()  # the saved tokenizer pads to a fixed length; one note needs none
    enc = tok.encode(text)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {"input_ids": [enc.ids], "attention_mask": [enc.attention_mask], "token_type_ids": [enc.type_ids]}
    logits = session.run(["logits"], {k: np.asarray(v, np.int64) for k, v in feed.items()})[0][0]
    id2label = json.loads((out / "config.json").read_text())["id2label"]
    return [id2label[str(i)] for i in logits.argmax(-1)]


def test_transformers_pipeline_tags_tokens_like_the_onnx_export(exported):  # noqa: F811
    from transformers import AutoTokenizer, pipeline

    model, out, _ = exported
    tagger = pipeline("token-classification", model=str(model), tokenizer=AutoTokenizer.from_pretrained(str(out)),
                      device="cpu", ignore_labels=[])
    got = {t["index"]: t["entity"] for t in tagger(NOTE)}
    tags = onnx_token_tags(out, NOTE)
    assert got == {i: tag for i, tag in enumerate(tags) if 0 < i < len(tags) - 1}  # [CLS]/[SEP] are not reported
    assert len(set(got.values())) > 1  # random weights: several tags, so the comparison means something


def test_optimum_loads_the_export_directory(exported):  # noqa: F811
    pytest.importorskip("optimum.onnxruntime", reason="optimum-onnx needs transformers < 4.58 (see pyproject dev extra)")
    from optimum.onnxruntime import ORTModelForTokenClassification
    from transformers import AutoTokenizer

    _, out, _ = exported
    model = ORTModelForTokenClassification.from_pretrained(str(out), file_name="model.onnx")
    tok = AutoTokenizer.from_pretrained(str(out))
    logits = model(**tok(NOTE, return_tensors="np")).logits[0]
    assert [model.config.id2label[int(i)] for i in np.asarray(logits).argmax(-1)] == onnx_token_tags(out, NOTE)
