"""The deployed predictor: ONNX Runtime + ``tokenizers`` + numpy, and no torch.

Hospitals run this on CPU-only machines without a deep-learning stack, so this module (and what
it imports: ``students.tagging``, ``distill.documents``) must never import torch or
transformers' modelling code; a test checks that in a fresh interpreter.

Windows and span decoding come from ``students.tagging``, the same code the torch predictor and
training use, so an fp32 export predicts the same spans as the torch model. Windows of a chunk
of notes are sorted by length and batched (length bucketing keeps padding small).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from distill.documents import Document, Span
from distill.manifest import sha256_file
from students import tagging

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
EXPORT_CARD = "export.json"
PRED_LAYER = tagging.PRED_LAYER


class OnnxModelError(ValueError):
    """An ONNX model (or its directory) that cannot be used: says which file and why."""



def resolve_onnx(path: str | os.PathLike, int8: bool = False) -> Path:
    """A ``.onnx`` file as given, or ``model.onnx`` / ``model.int8.onnx`` inside a directory; a
    directory holding only ``model.int8.onnx`` (an int8-only deployment) resolves to that file."""
    p = Path(path)
    if p.is_dir():
        if not int8 and not (p / ONNX_FILE).is_file() and (p / INT8_FILE).is_file():
            return p / INT8_FILE
        p = p / (INT8_FILE if int8 else ONNX_FILE)
        if not p.is_file():
            raise OnnxModelError(f"{p} not found: export the model first (distill export --model ... --out {p.parent}"
                                 f"{' --int8' if int8 else ''})")
        return p
    if not p.is_file():
        raise OnnxModelError(f"ONNX model {p} does not exist")
    return p


def is_onnx_model(path: str | os.PathLike) -> bool:
    """True for a ``.onnx`` file or a directory holding ``model.onnx`` or ``model.int8.onnx``
    (predict's dispatch rule)."""
    p = Path(path)
    return p.suffix == ".onnx" or (p.is_dir() and ((p / ONNX_FILE).is_file() or (p / INT8_FILE).is_file()))


def available_providers(prefer_gpu: bool = True) -> list[str]:
    """CUDA first when onnxruntime-gpu sees a GPU, CPU always as the fallback."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    chosen = ["CUDAExecutionProvider"] if prefer_gpu and "CUDAExecutionProvider" in have else []
    return chosen + ["CPUExecutionProvider"]


def _check_against_card(onnx_path: Path) -> None:
    """A file replaced after export (a different model, a truncated copy, another student's
    labels.json or tokenizer) is caught here by its size and SHA-256 in export.json, instead of
    decoding garbage or wrongly labelled spans. Checks the loaded model and every other listed
    file that is present, except the other ``.onnx`` variant (not used by this predictor)."""
    card = onnx_path.parent / EXPORT_CARD
    if not card.is_file():
        return
    try:
        files = json.loads(card.read_text(encoding="utf-8")).get("files", {})
    except json.JSONDecodeError as e:
        raise OnnxModelError(f"{card}: invalid JSON ({e.msg})") from None
    for name, want in sorted(files.items()):
        path = onnx_path.parent / name
        if not want or not path.is_file() or (name.endswith(".onnx") and name != onnx_path.name):
            continue
        fix = "re-export the model" if name == onnx_path.name else f"restore {name} from the export or re-export the model"
        size = path.stat().st_size
        if size != want.get("bytes"):
            raise OnnxModelError(f"{path} has {size} bytes but {card} recorded {want.get('bytes')}: the file was "
                                 f"replaced or truncated after export; {fix}")
        if want.get("sha256") and sha256_file(path) != want["sha256"]:
            raise OnnxModelError(f"{path} does not match the SHA-256 recorded in {card}: the file was replaced "
                                 f"after export (from a different model?); {fix}")


# Ops that quantize activations at run time with one scale per *tensor*, i.e. per batch.
_DYNAMIC_QUANT_OPS = {"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulInteger", "QAttention",
                      "QEmbedLayerNormalization"}


def _graph_nodes(path: Path) -> list[Any]:
    """The graph's nodes, read without the weights (cheap even for large models)."""
    import onnx

    return list(onnx.load(str(path), load_external_data=False).graph.node)


class OnnxPredictor(tagging.WindowPredictor):
    """Spans for notes from an exported student; ``predict_texts`` / ``predict`` / ``label``
    mirror the torch predictor, so either can be benchmarked or deployed behind the same calls.

    fp32 models batch windows across notes, sorted by length. Dynamically quantized (int8)
    models are batched one note at a time: their activation scale is computed over the whole
    batch, so cross-note batches would make a note's spans depend on its neighbours (measured:
    different spans for the same note at batch sizes 8 and 32). Per-note batches keep int8
    predictions a function of the note (and ``batch_size``) alone, independent of the other notes
    and their order, at no measurable throughput cost; per-window batches would cost ~30%.
    """

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        *,
        model_dir: str | os.PathLike | None = None,
        threads: int | None = None,
        batch_size: int = 32,
        docs_per_chunk: int = 64,
        providers: Sequence[str] | None = None,
        source: str = "",
        verify: bool = True,
    ):
        import onnxruntime as ort

        if batch_size < 1:
            raise OnnxModelError(f"batch_size must be at least 1, got {batch_size}")
        self.path = resolve_onnx(onnx_path)
        self.model_dir = Path(model_dir) if model_dir is not None else self.path.parent
        try:
            meta = tagging.read_labels_json(self.model_dir)
        except tagging.TaggingError as e:
            raise OnnxModelError(f"{e} (an ONNX model needs labels.json beside it; distill export copies it)") from None
        try:
            self.tokenizer = tagging.load_tokenizer(self.model_dir)
        except tagging.TaggingError as e:
            raise OnnxModelError(f"{e}; copy the tokenizer files next to the ONNX model (distill export does)") from None
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exceptions on bad JSON
            raise OnnxModelError(f"{self.model_dir / 'tokenizer.json'} cannot be read: {e}") from None
        if verify:  # verify=False skips these checks (export runs the model before writing export.json)
            _check_against_card(self.path)
            try:
                tagging.check_against_config(self.model_dir, meta, self.tokenizer)
            except tagging.TaggingError as e:
                raise OnnxModelError(str(e)) from None
        self.tags = list(meta["tags"])
        self.max_length = int(meta["max_length"])
        self.stride = int(meta["stride"])
        self.pad_id = int(meta.get("pad_token_id", self._config_pad_id()))
        self.batch_size = batch_size
        self.docs_per_chunk = docs_per_chunk
        self.source = source
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or 0)  # 0 = onnxruntime's default (physical cores)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.threads = threads
        self.providers = list(providers) if providers else available_providers()
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=self.providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types per failure
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise OnnxModelError(f"{self.path} is not a loadable ONNX model: {first}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        for required in ("input_ids", "attention_mask"):
            if required not in self.input_names:
                raise OnnxModelError(f"{self.path} takes inputs {self.input_names}, not a token classifier "
                                     f"(missing {required!r})")
        unknown = set(self.input_names) - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown:
            raise OnnxModelError(f"{self.path} needs inputs this runtime cannot provide: {sorted(unknown)}")
        out_shape = self.session.get_outputs()[0].shape
        if len(out_shape) != 3:
            raise OnnxModelError(f"{self.path} outputs shape {out_shape}, expected (batch, sequence, tags)")
        if isinstance(out_shape[-1], int) and out_shape[-1] != len(self.tags):
            raise OnnxModelError(f"{self.path} predicts {out_shape[-1]} tags but {self.model_dir / 'labels.json'} "
                                 f"lists {len(self.tags)}: the model and labels.json come from different students")
        self.quantized = any(n.op_type in _DYNAMIC_QUANT_OPS for n in _graph_nodes(self.path))
        self.per_note = self.quantized  # one note per batch: see the class docstring
        self.name = f"student-onnx:{self.path.parent.name}/{self.path.name}"

    def _config_pad_id(self) -> int:
        cfg = self.model_dir / "config.json"
        if cfg.is_file():
            return int(json.loads(cfg.read_text(encoding="utf-8")).get("pad_token_id") or 0)
        return 0

    @property
    def device(self) -> str:
        return "gpu" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    def _logits(self, windows: Sequence[tagging.Window]) -> list[np.ndarray]:
        order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
        out: list[np.ndarray | None] = [None] * len(windows)
        for k in range(0, len(order), self.batch_size):
            idx = order[k : k + self.batch_size]
            arrays = tagging.batch_arrays([windows[i] for i in idx], self.pad_id)
            logits = self.session.run(None, {n: arrays[n] for n in self.input_names})[0]
            for row, i in enumerate(idx):
                out[i] = logits[row, : len(windows[i].input_ids)]
        return out  # type: ignore[return-value]

    def label(self, docs: Iterable[Document]) -> Iterator[list[Span]]:
        """The teacher protocol's call shape (streaming, one span list per document)."""
        buf: list[Document] = []
        for d in docs:
            buf.append(d)
            if len(buf) == self.docs_per_chunk:
                yield from self.predict_texts([x.text for x in buf])
                buf = []
        if buf:
            yield from self.predict_texts([x.text for x in buf])

    def count_tokens(self, texts: Iterable[str]) -> int:
        """Sub-word tokens in ``texts`` (the tokens/s unit of the benchmark)."""
        return sum(len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False))


def load_onnx_predictor(path: str | os.PathLike, *, int8: bool = False, **kw: Any) -> OnnxPredictor:
    """An ONNX predictor for a ``.onnx`` file or an export directory (fp32 unless ``int8``, or
    when the directory holds only ``model.int8.onnx``)."""
    return OnnxPredictor(resolve_onnx(path, int8=int8), **kw)
