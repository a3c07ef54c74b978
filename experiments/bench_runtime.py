"""Export -> runtime acceptance on MACCROBAT dev, and torch vs ONNX fp32 / int8 side by side.

Dev recipe (reads ../shared/data, so it is an experiment, not library code). Three steps:

    # 1. a MiniLM student (skipped when --model already holds one; any trained student works)
    nice -n 10 python experiments/bench_runtime.py train --model runs/bench-minilm --max-steps 150
    # 2. export, span parity torch == ONNX fp32, int8 F1 loss, on MACCROBAT dev
    nice -n 10 python experiments/bench_runtime.py check --model runs/bench-minilm
    # 3. the benchmark (torch eager vs ONNX fp32 vs ONNX int8 in one process) + report
    nice -n 10 python experiments/bench_runtime.py bench --model runs/bench-minilm --out experiments/results/bench_runtime

``check`` writes ``<out>/parity.json``; ``bench`` writes results.json / report.md / report.html.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def train(args: argparse.Namespace) -> None:
    from distill.corpora import load_corpus
    from students.train import TrainConfig, train_student

    model = Path(args.model)
    if (model / "labels.json").is_file() and not args.force:
        print(f"{model} already holds a student (use --force to retrain)")
        return
    train_docs = load_corpus("maccrobat", args.data_dir, split="train")
    dev_docs = load_corpus("maccrobat", args.data_dir, split="dev")
    cfg = TrainConfig(base_model="minilm", max_length=args.max_length, stride=32, epochs=args.epochs,
                      max_steps=args.max_steps, batch_size=args.batch_size, learning_rate=1e-4, patience=100)
    t0 = time.time()
    res = train_student(train_docs, model, cfg, dev_docs=dev_docs, layer="gold",
                        data={"train": "maccrobat:train", "dev": "maccrobat:dev"})
    print(json.dumps({"wall_seconds": round(time.time() - t0, 1), "scores": res.card.get("scores")}, indent=2, default=str))


def check(args: argparse.Namespace) -> None:
    from distill.corpora import load_corpus
    from distill.metrics import score
    from students.export import export_student
    from students.predict import TorchPredictor
    from students.runtime import load_onnx_predictor

    model = Path(args.model)
    onnx_dir = Path(args.onnx) if args.onnx else model / "onnx"
    dev = load_corpus("maccrobat", args.data_dir, split="dev")
    texts = [d.text for d in dev]
    t0 = time.time()
    rep = export_student(model, onnx_dir, int8=True, sample_texts=texts[:8])
    export_s = time.time() - t0
    torch_spans = TorchPredictor.from_dir(model).predict_texts(texts)
    fp32_spans = load_onnx_predictor(onnx_dir).predict_texts(texts)
    int8_spans = load_onnx_predictor(onnx_dir, int8=True).predict_texts(texts)
    key = lambda spans: [[(s.start, s.end, s.label) for s in doc] for doc in spans]  # noqa: E731
    differing = [d.id for d, a, b in zip(dev, key(torch_spans), key(fp32_spans)) if a != b]

    def f1(spans: list, match: str) -> float:
        preds = [d.with_layers(pred=s) for d, s in zip(dev, spans)]
        return score(dev, preds, pred_layer="pred", match=match, bootstrap=0).micro.f1

    out = {
        "documents": len(dev), "spans_torch": sum(map(len, torch_spans)),
        "fp32_equal_to_torch": not differing, "fp32_differing_documents": differing,
        "export_max_abs_logit_diff": rep.max_abs_diff, "export_fused": rep.fused, "export_seconds": round(export_s, 1),
        "int8_agreement_sample": rep.int8_agreement,
        "micro_f1": {name: {m: round(f1(sp, m), 4) for m in ("exact", "relaxed")}
                     for name, sp in (("torch", torch_spans), ("onnx_fp32", fp32_spans), ("onnx_int8", int8_spans))},
    }
    out["int8_relaxed_f1_loss"] = round(out["micro_f1"]["onnx_fp32"]["relaxed"] - out["micro_f1"]["onnx_int8"]["relaxed"], 4)
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "parity.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


def bench(args: argparse.Namespace) -> None:
    from distill.bench import BenchConfig, run_bench, student_systems, teacher_system
    from distill.corpora import load_corpus
    from distill.report import write_report

    dev = load_corpus("maccrobat", args.data_dir, split="dev")
    systems = [teacher_system(t) for t in args.teacher]
    systems += student_systems(args.model, onnx_dir=args.onnx, threads=args.threads)
    cfg = BenchConfig(repeats=args.repeats, warmup_docs=args.warmup, latency_docs=args.latency_docs,
                      slice_docs=args.slice_docs)
    results = run_bench(systems, dev, {"maccrobat-dev": dev}, cfg)
    results["command"] = "python experiments/bench_runtime.py " + " ".join(sys.argv[1:])
    paths = write_report(results, args.out, reference=args.reference)
    for row in results["systems"]:
        print(f"{row['name']:40s} {row['speed']['notes_per_s']:8.2f} notes/s  "
              f"relaxed F1 {row['f1']['maccrobat-dev']['relaxed']['micro']['f1']:.3f}")
    print("notes/s over torch:", json.dumps(results["speedups"]))
    print("load average before / after:", results["machine"]["load_average"], results["load_average_after"])
    print("wrote", ", ".join(str(p) for p in paths.values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(DATA))
    sub = ap.add_subparsers(dest="step", required=True)
    t = sub.add_parser("train")
    t.add_argument("--model", required=True)
    t.add_argument("--max-steps", type=int, default=150)
    t.add_argument("--epochs", type=float, default=10.0)
    t.add_argument("--max-length", type=int, default=128)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--force", action="store_true")
    c = sub.add_parser("check")
    c.add_argument("--model", required=True)
    c.add_argument("--onnx", default=None)
    c.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bench_runtime"))
    b = sub.add_parser("bench")
    b.add_argument("--model", required=True)
    b.add_argument("--onnx", default=None)
    b.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bench_runtime"))
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--warmup", type=int, default=2)
    b.add_argument("--latency-docs", type=int, default=10)
    b.add_argument("--slice-docs", type=int, default=5)
    b.add_argument("--reference", default=None)
    b.add_argument("--teacher", action="append", default=[], help="teacher spec to include, e.g. ontology:open")
    args = ap.parse_args()
    {"train": train, "check": check, "bench": bench}[args.step](args)


if __name__ == "__main__":
    main()
