"""Trained student directory -> a self-contained ONNX deployment directory (fp32 + dynamic int8).

The export directory holds ``model.onnx`` (dynamic batch and sequence axes), optionally
``model.int8.onnx``, the tokenizer files, ``labels.json``, ``config.json`` and ``export.json``
(parity numbers, versions, file hashes). It is all ``students.runtime`` needs, with no torch.

Steps and why:
1. ``torch.onnx.export(..., dynamo=False)``: the legacy TorchScript tracer. With torch 2.13 the
   default dynamo exporter needs ``onnxscript`` (not a dependency here) and ``torch.export``
   of HF encoders trips on data-dependent mask code; the tracer exports BERT-style encoders
   cleanly, and the parity check below proves the traced graph is right on inputs with padding
   and with other batch/sequence sizes than the trace.
   The model is loaded with ``attn_implementation="eager"`` for the trace: that attention pattern
   is what onnxruntime's transformer optimizer recognises.
2. ``onnxruntime.transformers.optimizer`` fuses attention / LayerNorm / GELU into onnxruntime
   contrib ops. Measured here: dynamic int8 *without* fusion was no faster than fp32 on this
   AVX2 CPU (the per-MatMul quantize/dequantize overhead eats the gain); with fusion the
   attention projections become one quantized ``QAttention``. Best effort: if fusion breaks
   parity the unfused graph is kept and ``export.json`` says so.
3. ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, per-channel scales, activations
   quantized at run time; no calibration data needed).
4. Parity: fp32 ONNX logits vs the torch model (as ``students.predict`` loads it) within
   ``atol`` on real windows of sample notes (padded batch); int8 spans vs fp32 spans on the same
   notes, agreement reported (never asserted: int8 is lossy by design).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from students import tagging
from distill.manifest import sha256_file
from students.runtime import EXPORT_CARD, INT8_FILE, ONNX_FILE, OnnxPredictor

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Weights and training state stay behind; everything else (tokenizer, labels.json, config,
# training card) is copied so the export directory deploys on its own.
_NOT_COPIED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")
_NOT_COPIED_NAMES = {"training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", EXPORT_CARD}
# Encoders whose graph onnxruntime's "bert" fusion handles (others are exported unfused).
_FUSABLE = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert", "mpnet"}

SAMPLE_NOTES = (
    "A 63-year-old man with hypertension and type 2 diabetes mellitus presented with chest pain, "
    "dyspnea and diaphoresis. He was taking metformin 500 mg twice daily and lisinopril. "
    "ECG showed ST elevation; aspirin, clopidogrel and heparin were started.",
    "The patient denied fever, cough or weight loss. CT revealed a mass in the left lung consistent "
    "with adenocarcinoma. She received cisplatin and pemetrexed and developed nausea and fatigue.",
    "No known drug allergies.",
)


class ExportError(RuntimeError):
    """The model directory cannot be exported, or the exported graph failed its parity check."""


@dataclass
class ExportReport:
    """What ``export_student`` produced and how closely it matches torch (written to export.json)."""

    model_dir: str
    out_dir: str
    onnx: str
    int8: str | None
    inputs: list[str]
    opset: int
    fused: bool
    fused_ops: dict[str, int]
    max_abs_diff: float
    atol: float
    parity_windows: int
    int8_agreement: dict[str, Any] | None
    seconds: float
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_model_dir(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Fail early, naming the missing piece, before any slow loading; returns labels.json."""
    d = Path(model_dir)
    if not d.is_dir():
        raise ExportError(f"model directory {d} does not exist")
    if not (d / "config.json").is_file():
        raise ExportError(f"{d} has no config.json: not a trained student directory")
    if not any(d.glob("*.safetensors")) and not (d / "pytorch_model.bin").is_file():
        raise ExportError(f"{d} has no weights (model.safetensors or pytorch_model.bin)")
    try:
        meta = tagging.read_labels_json(d)
        tagging.load_tokenizer(d)
    except tagging.TaggingError as e:
        raise ExportError(str(e)) from None
    return meta


def _sample_windows(tok: Any, texts: Sequence[str], max_length: int, stride: int) -> list[tagging.Window]:
    """Windows from the sample notes plus one full-length window (position embeddings up to
    ``max_length`` must match too), so parity covers short, long and padded rows."""
    windows = [w for t in texts for w in tagging.encode_text(tok, t, max_length, stride).windows]
    long_text = " ".join(SAMPLE_NOTES * (1 + max_length // 40))
    windows.append(tagging.encode_text(tok, long_text, max_length, stride).windows[0])
    return windows


def _load_torch(model_dir: Path, eager: bool) -> Any:
    from transformers import AutoModelForTokenClassification

    kw = {"attn_implementation": "eager"} if eager else {}
    try:
        model = AutoModelForTokenClassification.from_pretrained(str(model_dir), **kw)
    except (ValueError, TypeError):  # an architecture without the eager switch
        model = AutoModelForTokenClassification.from_pretrained(str(model_dir))
    return model.eval()


def _input_names(model: Any) -> list[str]:
    import inspect

    params = inspect.signature(model.forward).parameters
    return [n for n in INPUT_NAMES if n in params]


def _torch_logits(model: Any, arrays: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(**{n: torch.from_numpy(arrays[n]) for n in names}).logits.float().numpy()


def _trace(model: Any, arrays: dict[str, np.ndarray], names: list[str], path: Path, opset: int) -> None:
    import torch

    class _Logits(torch.nn.Module):
        """Positional inputs in a fixed order and a single ``logits`` output."""

        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            return self.inner(**dict(zip(names, args))).logits

    dynamic = {n: {0: "batch", 1: "sequence"} for n in [*names, "logits"]}
    args = tuple(torch.from_numpy(arrays[n]) for n in names)
    with warnings.catch_warnings():
        # the tracer warns about Python-bool conversions in HF mask code and its own deprecation;
        # the parity check below is what decides whether the traced graph is right
        warnings.simplefilter("ignore")
        torch.onnx.export(_Logits(model), args, str(path), input_names=names, output_names=["logits"],
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)


def _fuse(src: Path, dst: Path, config: Any) -> dict[str, int]:
    from onnxruntime.transformers import optimizer

    opt = optimizer.optimize_model(str(src), model_type="bert",
                                   num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
                                   hidden_size=int(getattr(config, "hidden_size", 0) or 0))
    opt.save_model_to_file(str(dst))
    return {k: int(v) for k, v in (opt.get_fused_operator_statistics() or {}).items() if v}


def _ort_logits(path: Path, arrays: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {n: arrays[n] for n in names})[0]


def _max_diff(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Largest logit difference on real (unpadded) positions."""
    if a.shape != b.shape:
        raise ExportError(f"ONNX logits have shape {a.shape}, torch {b.shape}")
    keep = mask.astype(bool)
    return float(np.abs(a[keep] - b[keep]).max())


def _quantize(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic nags "run pre-processing" on the root logger
    try:
        # DefaultTensorType: shape inference cannot type the outputs of fused contrib ops
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)


def span_agreement(reference: Sequence[Sequence[Any]], other: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Exact-span agreement of two predictors on the same notes: F1 of ``other`` against
    ``reference`` plus the counts (1.0 when both found nothing)."""
    ref = {(i, s.start, s.end, s.label) for i, spans in enumerate(reference) for s in spans}
    oth = {(i, s.start, s.end, s.label) for i, spans in enumerate(other) for s in spans}
    common = len(ref & oth)
    f1 = 2 * common / (len(ref) + len(oth)) if ref or oth else 1.0
    return {"f1": round(f1, 4), "reference_spans": len(ref), "other_spans": len(oth), "common": common,
            "notes": len(reference)}


def _copy_assets(src: Path, dst: Path) -> list[str]:
    copied = []
    for p in sorted(src.iterdir()):
        if not p.is_file() or p.name in _NOT_COPIED_NAMES or p.suffix in _NOT_COPIED_SUFFIXES:
            continue
        if p.resolve() != (dst / p.name).resolve():
            shutil.copy2(p, dst / p.name)
        copied.append(p.name)
    return copied


def export_student(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    int8: bool = True,
    fuse: bool = True,
    sample_texts: Sequence[str] | None = None,
    atol: float = 1e-4,
    opset: int = OPSET,
) -> ExportReport:
    """Export ``model_dir`` to ``out_dir`` (default ``<model_dir>/onnx``) and verify it.

    Everything is written to ``<out_dir>.partial`` first and moved into ``out_dir`` only after the
    parity check passed, replacing the previous export's model files and export.json as a set: a
    failed re-export never destroys a verified export, and no stale ``model.int8.onnx`` survives
    an export without ``int8``. Raises ``ExportError`` when the directory is incomplete, fp32
    parity exceeds ``atol`` (the partial folder is kept for inspection) or quantization fails.
    """
    import onnxruntime
    import torch
    import transformers

    t0 = time.perf_counter()
    model_dir = Path(model_dir)
    meta = check_model_dir(model_dir)
    final = Path(out_dir) if out_dir is not None else model_dir / "onnx"
    if final.exists() and not final.is_dir():
        raise ExportError(f"{final} is a file: --out must be a folder (new or holding an earlier export)")
    out = final.with_name(final.name + ".partial")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tok = tagging.load_tokenizer(model_dir)
    tags, max_length, stride = meta["tags"], int(meta["max_length"]), int(meta["stride"])
    texts = list(sample_texts) if sample_texts else list(SAMPLE_NOTES)
    windows = _sample_windows(tok, texts, max_length, stride)

    reference = _load_torch(model_dir, eager=False)  # what students.predict runs
    if reference.config.num_labels != len(tags):
        raise ExportError(f"{model_dir}: the model has {reference.config.num_labels} outputs but labels.json "
                          f"lists {len(tags)} tags")
    pad_id = int(meta.get("pad_token_id", reference.config.pad_token_id or 0))
    names = _input_names(reference)
    trace_arrays = tagging.batch_arrays(sorted(windows, key=lambda w: len(w.input_ids))[:2], pad_id)
    all_arrays = tagging.batch_arrays(windows, pad_id)
    expected = _torch_logits(reference, all_arrays, names)
    traced = _load_torch(model_dir, eager=True)

    onnx_path = out / ONNX_FILE
    raw_path = out / "model.unfused.onnx"
    _trace(traced, trace_arrays, names, raw_path, opset)
    del traced
    diff_raw = _max_diff(_ort_logits(raw_path, all_arrays, names), expected, all_arrays["attention_mask"])
    fused_ops: dict[str, int] = {}
    fused = False
    diff = diff_raw
    if fuse and reference.config.model_type in _FUSABLE:
        fused_path = out / "model.fused.onnx"
        try:
            fused_ops = _fuse(raw_path, fused_path, reference.config)
            diff_fused = _max_diff(_ort_logits(fused_path, all_arrays, names), expected, all_arrays["attention_mask"])
        except Exception as e:  # noqa: BLE001 - fusion is an optimisation; the plain graph still works
            log.warning("graph fusion failed (%s); keeping the unfused graph", e)
            diff_fused = float("inf")
        if diff_fused <= atol:
            os.replace(fused_path, onnx_path)
            fused, diff = True, diff_fused
        else:
            log.warning("fused graph differs from torch by %.2e > %.0e; keeping the unfused graph", diff_fused, atol)
            fused_path.unlink(missing_ok=True)
            fused_ops = {}
    if not fused:
        os.replace(raw_path, onnx_path)
    raw_path.unlink(missing_ok=True)
    if not diff <= atol:  # also catches NaN
        raise ExportError(f"ONNX logits differ from torch by {diff:.2e} (> {atol:.0e}) on {len(windows)} sample "
                          f"windows; not exported (the graph is kept in {out} for inspection; {final} is unchanged)")

    copied = _copy_assets(model_dir, out)
    int8_path = None
    agreement = None
    if int8:
        int8_path = out / INT8_FILE
        try:
            _quantize(onnx_path, int8_path)
        except Exception as e:  # noqa: BLE001 - onnxruntime.quantization raises many types; keep the cause
            raise ExportError(f"int8 quantization failed ({type(e).__name__}: {e}); {final} is unchanged; "
                              f"export without --int8 to get the fp32 model") from e
        fp32_spans = OnnxPredictor(onnx_path, verify=False).predict_texts(texts)
        int8_spans = OnnxPredictor(int8_path, verify=False).predict_texts(texts)
        agreement = span_agreement(fp32_spans, int8_spans)

    files = {name: {"bytes": (out / name).stat().st_size, "sha256": sha256_file(out / name)}
             for name in [ONNX_FILE, *([INT8_FILE] if int8 else []), *copied]}
    _publish(out, final, list(files))
    report = ExportReport(
        model_dir=str(model_dir), out_dir=str(final), onnx=str(final / ONNX_FILE),
        int8=str(final / INT8_FILE) if int8_path else None,
        inputs=names, opset=opset, fused=fused, fused_ops=fused_ops, max_abs_diff=diff, atol=atol,
        parity_windows=len(windows), int8_agreement=agreement, seconds=round(time.perf_counter() - t0, 2),
        files=files, versions={"torch": torch.__version__, "transformers": transformers.__version__,
                               "onnxruntime": onnxruntime.__version__},
    )
    (final / EXPORT_CARD).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report


def _publish(staged: Path, final: Path, names: Sequence[str]) -> None:
    """Move a verified export into ``final``: the previous export's card and model files go first
    (so a crash in between leaves no export.json vouching for a mix), then the new files."""
    final.mkdir(parents=True, exist_ok=True)
    for old in (EXPORT_CARD, ONNX_FILE, INT8_FILE):
        (final / old).unlink(missing_ok=True)
    for name in names:
        os.replace(staged / name, final / name)
    shutil.rmtree(staged, ignore_errors=True)
