"""Measure the levers of issue #13 one at a time: how much silver text, O-down-weighting,
self-training, and teacher choice move a silver-trained student against its teacher.

Each run labels a pool of unlabelled notes with the teacher (no gold label is read for training),
trains a MiniLM student on the silver layer with early stopping on MACCROBAT dev, and scores dev and
test once. One JSON line per run is appended to ``--log`` so a table can be built from reruns.

    python experiments/distill_levers.py --pool maccrobat --pool mtsamples:600 --o-weight 0.3 --name mts600_o03
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distill.corpora import load_corpus  # noqa: E402
from distill.documents import SILVER, Document  # noqa: E402
from distill.metrics import score  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def load_pool(spec: str, data_dir: Path) -> list[Document]:
    """``corpus[:N]``: the notes of a corpus (MACCROBAT: its train split only), text only."""
    name, _, n = spec.partition(":")
    split = "train" if name == "maccrobat" else None
    docs = load_corpus(name, str(data_dir), split)
    docs = sorted(docs, key=lambda d: d.id)
    if n:
        docs = docs[: int(n)]
    return [Document(d.id, d.text, {"pool": name}) for d in docs]


def label(docs: list[Document], teacher_spec: str) -> list[Document]:
    from teachers.registry import make_teacher

    t = make_teacher(teacher_spec)
    return [d.with_layers(**{SILVER: spans}) for d, spans in zip(docs, t.label(docs))]


def silver_docs_text(docs: list[Document]) -> list[Document]:
    return [Document(d.id, d.text, d.meta) for d in docs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", action="append", required=True, help="corpus[:N]; repeat")
    ap.add_argument("--teacher", default="ontology:open")
    ap.add_argument("--data-dir", type=Path, default=SHARED)
    ap.add_argument("--o-weight", type=float, default=1.0)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--eval-steps", type=int, default=0)
    ap.add_argument("--self-train", type=int, default=0, help="self-training rounds after the first student")
    ap.add_argument("--threshold", type=float, default=0.0, help="self-training confidence threshold (0: picked on dev)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--runs", type=Path, default=Path("runs/levers"))
    ap.add_argument("--log", type=Path, default=Path("experiments/results/distill_levers.jsonl"))
    a = ap.parse_args()

    from students.train import TrainConfig, train_student

    started = time.time()
    notes = [d for spec in a.pool for d in load_pool(spec, a.data_dir)]
    silver = label(notes, a.teacher)
    dev = load_corpus("maccrobat", str(a.data_dir), "dev")
    test = load_corpus("maccrobat", str(a.data_dir), "test")
    teacher_test = label([Document(d.id, d.text) for d in test], a.teacher)
    t_rep = score(test, teacher_test, pred_layer=SILVER, match="relaxed", bootstrap=0)
    cfg = TrainConfig(epochs=a.epochs, max_steps=a.max_steps, patience=a.patience, o_weight=a.o_weight,
                      eval_steps=a.eval_steps)
    out = a.runs / a.name
    res = train_student(silver, out, cfg, dev_docs=dev, layer=SILVER, test_docs=test, progress=False)
    rounds = [{"dev": res.card["scores"]["dev"]["relaxed_f1"], "test": res.card["scores"]["test"]["relaxed_f1"]}]
    for r in range(1, a.self_train + 1):
        from students.predict import load_predictor
        from students.self_train import add_confident_spans, pick_threshold

        pred = load_predictor(out)
        notes_pred = pred.predict(silver_docs_text(notes))
        t, by_t = (a.threshold, {}) if a.threshold else pick_threshold(dev, pred.predict(silver_docs_text(dev)), cfg.labels)
        silver_r, merge = add_confident_spans(silver, notes_pred, t)
        out = a.runs / f"{a.name}_st{r}"
        res = train_student(silver_r, out, cfg, dev_docs=dev, layer=SILVER, test_docs=test, progress=False)
        rounds.append({"threshold": t, "by_threshold": by_t, "merge": merge.to_dict(),
                       "dev": res.card["scores"]["dev"]["relaxed_f1"], "test": res.card["scores"]["test"]["relaxed_f1"]})
        print("round", r, json.dumps(rounds[-1]))
    row = {"name": a.name, "pools": a.pool, "teacher": a.teacher, "notes": len(notes), "o_weight": a.o_weight,
           "epochs": a.epochs, "teacher_test_relaxed_f1": round(t_rep.micro.f1, 4),
           "dev": res.card["scores"]["dev"], "test": res.card["scores"]["test"],
           "windows": res.card["data"]["features"]["windows"], "train_seconds": res.card["wall_seconds"],
           "rounds": rounds}
    print(json.dumps({k: row[k] for k in ("name", "notes", "windows", "train_seconds", "teacher_test_relaxed_f1")}),
          "dev", row["dev"]["relaxed_f1"], "test", row["test"]["relaxed_f1"], f"{time.time() - started:.0f}s")
    a.log.parent.mkdir(parents=True, exist_ok=True)
    with a.log.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
