"""Why int8 ONNX stays under 2x torch on this CPU: op profiles and int8 variants, measured.

Dev diagnostics behind ``experiments/bench_runtime.md`` (reads ../shared; needs an exported
student, e.g. ``runs/bench-gold-minilm/onnx`` from ``bench_runtime.py check``). Every variant runs
the 30 MACCROBAT dev notes as per-note batches (the int8 runtime's batching) on 2 threads; the
variants are timed interleaved, round after round, and the median is reported, so drift of the
machine's speed hits all of them.

    python experiments/int8_diagnostics.py profile   # onnxruntime time per op type, int8 vs fp32
    python experiments/int8_diagnostics.py variants  # MatMulNBits / MHA fusion / session options
    python experiments/int8_diagnostics.py static    # calibrated (static) int8 instead of dynamic
    python experiments/int8_diagnostics.py parallel  # two notes at once, for torch *and* int8
    (``variants`` needs ``pip install onnx-ir`` for onnxruntime's MatMulNBitsQuantizer; not a
    project dependency.)
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill.bench import machine_info  # noqa: E402
from distill.corpora import load_corpus  # noqa: E402
from students import tagging  # noqa: E402


def note_batches(onnx_dir: Path, data_dir: str, split_partial: bool = False) -> list[dict]:
    """One input batch per dev note (its windows), or two when ``split_partial`` puts the note's
    shorter-than-max windows in a batch of their own (less padding, more calls)."""
    meta = tagging.read_labels_json(onnx_dir)
    tok = tagging.load_tokenizer(onnx_dir)
    full = int(meta["max_length"])
    out = []
    for d in load_corpus("maccrobat", data_dir, split="dev"):
        ws = tagging.encode_text(tok, d.text, full, int(meta["stride"])).windows
        groups = [[w for w in ws if len(w.input_ids) < full], [w for w in ws if len(w.input_ids) == full]] \
            if split_partial else [ws]
        out += [tagging.batch_arrays(g, int(meta.get("pad_token_id", 0))) for g in groups if g]
    return out


def session(path: Path, threads: int = 2, profile: str | None = None, **config: str):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.log_severity_level = 3
    for k, v in config.items():
        o.add_session_config_entry(k, v)
    if profile:
        o.enable_profiling = True
        o.profile_file_prefix = profile
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def run_all(sess, batches: list[dict], workers: int = 1) -> None:
    names = [i.name for i in sess.get_inputs()]

    def one(b: dict) -> None:
        sess.run(None, {n: b[n] for n in names})

    if workers == 1:
        for b in batches:
            one(b)
    else:
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(one, batches))


def profile(args: argparse.Namespace) -> None:
    onnx_dir = Path(args.onnx)
    batches = note_batches(onnx_dir, args.data_dir)
    for name in ("model.int8.onnx", "model.onnx"):
        sess = session(onnx_dir / name, profile=f"/tmp/int8_diag_{name}")
        run_all(sess, batches)
        events = json.loads(Path(sess.end_profiling()).read_text())
        per_op = collections.Counter()
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                per_op[e["args"]["op_name"]] += e["dur"]
        total = sum(per_op.values())
        print(f"{name}: {total / 1e6:.2f} s in kernels")
        for op, us in per_op.most_common(8):
            print(f"  {op:28s} {us / 1e6:6.2f} s {100 * us / total:4.0f}%")


def build_variants(onnx_dir: Path, work: Path) -> dict[str, Path]:
    """fp32 graphs fused without attention / with MultiHeadAttention (re-traced from the student
    next to the export), then weight-only MatMulNBits or dynamic int8 on them."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    from students.export import _input_names, _load_torch, _trace

    work.mkdir(parents=True, exist_ok=True)
    raw = work / "raw.onnx"
    model_dir = onnx_dir.parent
    tok = tagging.load_tokenizer(onnx_dir)
    model = _load_torch(model_dir, eager=True)
    windows = tagging.encode_text(tok, "A 63-year-old man with chest pain took aspirin.", 128, 16).windows
    _trace(model, tagging.batch_arrays(windows, 0), _input_names(model), raw, 17)
    cfg = model.config
    out: dict[str, Path] = {}
    for base, flags in (("noattn", {"enable_attention": False}), ("mha", {"use_multi_head_attention": True})):
        fo = FusionOptions("bert")
        for k, v in flags.items():
            setattr(fo, k, v)
        fused = work / f"fused_{base}.onnx"
        optimizer.optimize_model(str(raw), model_type="bert", num_heads=cfg.num_attention_heads,
                                 hidden_size=cfg.hidden_size, optimization_options=fo).save_model_to_file(str(fused))
        for bits, block in ((8, 32), (8, 128), (4, 32)):
            q = MatMulNBitsQuantizer(onnx.load(str(fused)), bits=bits, block_size=block, is_symmetric=True, accuracy_level=4)
            q.process()
            out[f"{base} MatMulNBits {bits}-bit block {block}"] = work / f"{base}_nb{bits}_{block}.onnx"
            q.model.save_model_to_file(str(out[f"{base} MatMulNBits {bits}-bit block {block}"]), use_external_data_format=False)
    out["mha + dynamic int8"] = work / "mha_dyn_int8.onnx"
    quantize_dynamic(str(work / "fused_mha.onnx"), str(out["mha + dynamic int8"]), weight_type=QuantType.QInt8,
                     per_channel=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return out


def _timed(systems: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per round for each ``name -> (setup, run)``, interleaved, order reversed every other
    round; ``setup`` runs untimed before each run (e.g. torch's global thread count)."""
    times: dict[str, list[float]] = {k: [] for k in systems}
    for r in range(rounds):
        for name in list(systems) if r % 2 == 0 else list(reversed(systems)):
            setup, run = systems[name]
            setup()
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return times


def _print_times(times: dict[str, list[float]], rounds: int, extra: dict[str, str] | None = None) -> None:
    m = machine_info()
    print(f"{m['cpu']}, {m['logical_cores']} cores, load average {m['load_average']}; 30 MACCROBAT dev notes, "
          f"median of {rounds} interleaved rounds")
    for name, ts in times.items():
        print(f"  {name:44s} {statistics.median(ts):6.2f} s  {[round(t, 2) for t in ts]}  {(extra or {}).get(name, '')}")


def variants(args: argparse.Namespace) -> None:
    onnx_dir = Path(args.onnx)
    int8, fp32 = onnx_dir / "model.int8.onnx", onnx_dir / "model.onnx"
    plain, split = note_batches(onnx_dir, args.data_dir), note_batches(onnx_dir, args.data_dir, split_partial=True)
    # name -> (session, batches, workers)
    systems = {"shipped int8 (2 threads)": (session(int8), plain, 1), "fp32 (2 threads)": (session(fp32), plain, 1),
               "int8, denormals as zero": (session(int8, **{"session.set_denormal_as_zero": "1"}), plain, 1),
               "int8, 2 notes at once x 1 thread": (session(int8, threads=1), plain, 2),
               "int8, partial windows batched apart": (session(int8), split, 1)}
    if not args.skip_build:
        for name, path in build_variants(onnx_dir, Path(args.work)).items():
            systems[name] = (session(path), plain, 1)
    for sess, batches, workers in systems.values():
        run_all(sess, batches[:3], workers)  # warm-up
    runs = {name: (lambda: None, lambda s=sess, b=batches, w=workers: run_all(s, b, w))
            for name, (sess, batches, workers) in systems.items()}
    _print_times(_timed(runs, args.rounds), args.rounds)


def static(args: argparse.Namespace) -> None:
    """Static (calibrated) int8: activation scales fixed from 40 MACCROBAT train notes, so no
    per-batch quantize step and no batch dependence. Scored (relaxed micro F1 on dev) and timed
    with the runtime's own predictor, per-note batches like the shipped int8 model."""
    import logging

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from distill.metrics import score
    from students.export import _input_names, _load_torch, _trace
    from students.runtime import OnnxPredictor

    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's pre-processing nag
    onnx_dir, work = Path(args.onnx), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    meta, tok = tagging.read_labels_json(onnx_dir), tagging.load_tokenizer(onnx_dir)
    length, stride = int(meta["max_length"]), int(meta["stride"])
    calib = [tagging.batch_arrays(tagging.encode_text(tok, d.text, length, stride).windows, 0)
             for d in load_corpus("maccrobat", args.data_dir, split="train")[:40]]

    class Reader(CalibrationDataReader):
        def __init__(self, names: list[str]):
            self.batches = iter([{n: b[n] for n in names} for b in calib])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    raw = work / "raw.onnx"
    model = _load_torch(onnx_dir.parent, eager=True)
    _trace(model, calib[0], _input_names(model), raw, 17)
    graphs = {"static int8, unfused graph, all ops": (raw, {}),
              "static int8, unfused graph, MatMul only": (raw, {"op_types_to_quantize": ["MatMul", "Gemm"]}),
              "static int8, fused graph (shipped fp32)": (onnx_dir / "model.onnx",
                                                         {"extra_options": {"DefaultTensorType": onnx.TensorProto.FLOAT}})}
    paths = {"shipped int8 (dynamic)": onnx_dir / "model.int8.onnx", "shipped fp32": onnx_dir / "model.onnx"}
    for i, (name, (src, kw)) in enumerate(graphs.items()):
        paths[name] = work / f"static_{i}.onnx"
        names = [x.name for x in onnx.load(str(src), load_external_data=False).graph.input]
        quantize_static(str(src), str(paths[name]), Reader(names), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, **kw)
    dev = load_corpus("maccrobat", args.data_dir, split="dev")
    texts = [d.text for d in dev]
    systems, f1 = {}, {}
    for name, path in paths.items():
        pred = OnnxPredictor(path, model_dir=onnx_dir, threads=2, verify=False)
        pred.per_note = True
        docs = [d.with_layers(pred=s) for d, s in zip(dev, pred.predict_texts(texts))]
        f1[name] = f"relaxed micro F1 {score(dev, docs, pred_layer='pred', match='relaxed', bootstrap=0).micro.f1:.4f}"
        systems[name] = (lambda: None, lambda p=pred: p.predict_texts(texts))
    _print_times(_timed(systems, args.rounds), args.rounds, f1)


def parallel(args: argparse.Namespace) -> None:
    """Two notes at once on two 1-thread workers, against one note at a time on 2 threads, for the
    torch predictor as well as the int8 runtime: a throughput lever only counts toward the int8
    ratio if torch eager does not gain as much from it."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from students.predict import TorchPredictor
    from students.runtime import OnnxPredictor

    onnx_dir = Path(args.onnx)
    texts = [d.text for d in load_corpus("maccrobat", args.data_dir, split="dev")]
    pool = ThreadPoolExecutor(2)
    torch_p = TorchPredictor.from_dir(onnx_dir.parent)
    int8_2t = OnnxPredictor(onnx_dir / "model.int8.onnx", threads=2)
    int8_1t = OnnxPredictor(onnx_dir / "model.int8.onnx", threads=1)

    def threads(n: int):
        return lambda: torch.set_num_threads(n)

    def notes_at_once(p):
        return lambda: list(pool.map(lambda t: p.predict_texts([t])[0], texts))

    systems = {"torch, 2 threads": (threads(2), lambda: torch_p.predict_texts(texts)),
               "torch, 2 notes at once x 1 thread": (threads(1), notes_at_once(torch_p)),
               "int8 runtime, 2 threads (shipped)": (threads(2), lambda: int8_2t.predict_texts(texts)),
               "int8 runtime, 2 notes at once x 1 thread": (threads(2), notes_at_once(int8_1t))}
    for setup, run in systems.values():  # warm-up
        setup()
        run()
    _print_times(_timed(systems, args.rounds), args.rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["profile", "variants", "static", "parallel"])
    ap.add_argument("--onnx", default=str(ROOT / "runs" / "bench-gold-minilm" / "onnx"))
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/int8_variants", help="where the variant graphs are written")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--skip-build", action="store_true", help="only the shipped graphs and session options")
    args = ap.parse_args()
    {"profile": profile, "variants": variants, "static": static, "parallel": parallel}[args.step](args)


if __name__ == "__main__":
    main()
