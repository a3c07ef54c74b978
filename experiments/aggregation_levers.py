"""Lever 2 of issue #13 without training: how much each aggregation method recovers from the
dictionary's parts, scored directly on MACCROBAT gold (dev + test texts; no student involved).

Teachers: the sub-lexicons of ``ontology:open`` as separate labelling functions (skweak-style),
plus the RxNorm-derived drug list from ../shared, plus ``ontology:open`` itself.

    python experiments/aggregation_levers.py --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distill.aggregate import aggregate  # noqa: E402
from distill.corpora import load_corpus  # noqa: E402
from distill.documents import Document  # noqa: E402
from distill.metrics import score  # noqa: E402
from teachers.registry import make_teacher  # noqa: E402

PARTS = ["ontology:doid", "ontology:symp", "ontology:hpo", "ontology:drugbank", "ontology:fda", "ontology:clinical"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("experiments/results/aggregation_levers.json"))
    a = ap.parse_args()
    gold = [d for s in ("dev", "test") for d in load_corpus("maccrobat", str(a.data_dir), s)]
    rx = a.data_dir / "lexicons" / "rxnorm_druglist_medextractr" / "rxnorm_druglist.txt.gz"
    teachers = {spec: make_teacher(spec) for spec in PARTS + ["ontology:open"]}
    teachers["ontology:rxnorm"] = make_teacher("ontology:rxnorm", rxnorm=str(rx))
    docs = [Document(d.id, d.text, layers={"gold": d.spans("gold")}) for d in gold]
    for name, t in teachers.items():
        docs = [d.with_layers(**{name: s}) for d, s in zip(docs, t.label([Document(x.id, x.text) for x in docs]))]
    rows = {}
    for name in teachers:
        rows[name] = score(docs, docs, pred_layer=name, match="relaxed", bootstrap=0).micro.f1
    for combo_name, layers in (("parts", PARTS), ("parts+rxnorm", PARTS + ["ontology:rxnorm"]),
                               ("open+rxnorm", ["ontology:open", "ontology:rxnorm"]),
                               ("open+parts+rxnorm", ["ontology:open", *PARTS, "ontology:rxnorm"])):
        for method in ("union", "majority", "label_model"):
            res = aggregate(docs, layers, method)
            key = f"{method}({combo_name})"
            rows[key] = score(res.docs, res.docs, pred_layer="silver", match="relaxed", bootstrap=0).micro.f1
    for k, v in rows.items():
        print(f"{k:45s} relaxed micro F1 {v:.4f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"documents": len(docs), "relaxed_micro_f1": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
