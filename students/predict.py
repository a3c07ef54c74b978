"""Trained student -> spans for new notes (torch), with the windows and decoding used in training.

``load_predictor(path)`` is the one place that picks a backend for a model path; today it returns
the torch predictor for an HF model directory (the ONNX runtime hooks in here for ``*.onnx``
files and directories holding ``model.onnx`` or only ``model.int8.onnx``). Every predictor offers
``predict_texts(texts)`` and ``predict(docs, layer)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from distill.documents import Document
from students import tagging

if TYPE_CHECKING:
    from distill.ray_engine import RayEngine

PRED_LAYER = tagging.PRED_LAYER



def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class TorchPredictor(tagging.WindowPredictor):
    """Batched inference with a ``transformers`` token classifier on CPU (or any torch device).

    Windows of all notes in a chunk are sorted by length before batching, so padding stays small.
    """

    def __init__(self, model: Any, tokenizer: Any, tags: Sequence[str], max_length: int, stride: int,
                 pad_id: int = 0, batch_size: int = 32, docs_per_chunk: int = 64, source: str = ""):
        if batch_size < 1:
            raise tagging.TaggingError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.tokenizer = tagging.prepare_tokenizer(tokenizer)
        self.tags = list(tags)
        self.max_length = max_length
        self.stride = stride
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.docs_per_chunk = docs_per_chunk
        self.source = source
        n_out = getattr(getattr(model, "config", None), "num_labels", len(self.tags))
        if n_out != len(self.tags):
            raise tagging.TaggingError(f"the model has {n_out} outputs but labels.json lists {len(self.tags)} tags")

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike, batch_size: int = 32, device: str = "cpu") -> "TorchPredictor":
        """Load a trained student directory; labels.json and the tokenizer are checked against
        config.json first, so files from another model fail loudly instead of mislabelling spans."""
        from transformers import AutoModelForTokenClassification

        model_dir = Path(model_dir)
        meta = tagging.read_labels_json(model_dir)
        tok = tagging.load_tokenizer(model_dir)
        tagging.check_against_config(model_dir, meta, tok)
        if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("pytorch_model*.bin")):
            raise tagging.TaggingError(f"{model_dir} has no weights (model.safetensors, pytorch_model.bin, model.onnx "
                                       f"or model.int8.onnx): point at a trained student or an ONNX export")
        model = AutoModelForTokenClassification.from_pretrained(str(model_dir)).to(device).eval()
        pad_id = meta.get("pad_token_id", model.config.pad_token_id or 0)
        return cls(model, tok, meta["tags"], meta["max_length"], meta["stride"], pad_id, batch_size)

    def _logits(self, windows: Sequence[tagging.Window]) -> list[np.ndarray]:
        import torch

        order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
        out: list[np.ndarray | None] = [None] * len(windows)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for idx in _chunks(order, self.batch_size):
                    arrays = tagging.batch_arrays([windows[i] for i in idx], self.pad_id)
                    logits = self.model(
                        input_ids=torch.from_numpy(arrays["input_ids"]).to(device),
                        attention_mask=torch.from_numpy(arrays["attention_mask"]).to(device),
                    ).logits.float().cpu().numpy()
                    for row, i in enumerate(idx):
                        out[i] = logits[row, : len(windows[i].input_ids)]
        finally:
            self.model.train(was_training)
        return out  # type: ignore[return-value]


def load_predictor(path: str | os.PathLike, batch_size: int = 32, **kw: Any) -> Any:
    """A predictor for a model path (the backend dispatch point): a ``.onnx`` file or a directory
    holding ``model.onnx`` (or only ``model.int8.onnx``) goes to the torch-free ONNX runtime, an
    HF directory to torch."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model {p} does not exist")
    from students import runtime

    if runtime.is_onnx_model(p):
        return runtime.load_onnx_predictor(p, batch_size=batch_size, **kw)
    if p.is_dir() and (p / "config.json").is_file():
        return TorchPredictor.from_dir(p, batch_size=batch_size, **kw)
    raise tagging.TaggingError(f"{p} is not a student model directory (expected config.json and labels.json)")


def predict_file(model: str | os.PathLike, input_path: str | os.PathLike, output_path: str | os.PathLike,
                 layer: str = PRED_LAYER, batch_size: int = 32, progress: bool = True, engine: "RayEngine | None" = None,
                 **predictor_kw: Any) -> int:
    """Read notes (JSONL), write predictions (JSONL, flat ``entities``); returns the note count.

    Input layers are not copied to the output: the file holds exactly what the student predicted.
    ``engine`` (a ``distill.ray_engine.RayEngine``) predicts on Ray actors instead of in this process.
    """
    from tqdm import tqdm

    from distill.io.jsonl import read_jsonl, write_jsonl

    predictor = load_predictor(model, batch_size=batch_size, **predictor_kw) if engine is None else None
    docs = [Document(d.id, d.text, d.meta) for d in read_jsonl(input_path)]
    if not docs:
        raise ValueError(f"{input_path} contains no notes: nothing to predict")
    if engine is not None:
        return write_jsonl(engine.predict(model, docs, layer, batch_size=batch_size, **predictor_kw), output_path, flat=layer)
    out: list[Document] = []
    step = getattr(predictor, "docs_per_chunk", 64)
    with tqdm(total=len(docs), unit="note", disable=not progress, desc="predict") as bar:
        for chunk in _chunks(docs, step):
            out.extend(predictor.predict(chunk, layer))
            bar.update(len(chunk))
    return write_jsonl(out, output_path, flat=layer)
