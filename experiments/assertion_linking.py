"""Assertion accuracy (ConText rules, MACCROBAT) and concept-linking accuracy (NCBI-disease,
BC5CDR) on gold mentions, so each component is measured without the student's span errors.

    python experiments/assertion_linking.py [--data-dir ../shared/data] [--json out.json]

Assertion gold (MACCROBAT brat): POLARITY=NEG → absent; POLARITY=UNCERTAIN / MAYBE_NEG /
MAYBE_POS → possible; otherwise a mention inside a Family_history entity → family, inside a
History entity → historical, else present (MACCROBAT has no hypothetical marking). Scored on
Sign_symptom, Disease_disorder and Medication mentions of the hash splits (the window was
chosen on train; test is reported).

Linking gold (PubTator MeSH / OMIM ids): a linked concept is correct when its ontology
cross-references (DOID ``MESH:``/``OMIM:`` xrefs, HPO ``MSH:`` xrefs) contain one of the
mention's gold ids; links to concepts without such xrefs (the curated ``CLIN:`` vocabulary,
most SYMP terms) count as wrong, so precision is also given over links that can be checked.
"reachable" mentions are those whose gold id some vendored concept
cross-references at all, the ceiling of this lexicon.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill.assertion import ContextRules  # noqa: E402
from distill.corpora import hash_split, load_corpus  # noqa: E402
from distill.documents import ASSERTIONS, DISEASE  # noqa: E402
from distill.io.brat import read_brat  # noqa: E402
from ontologies.lexicon import VENDORED  # noqa: E402
from ontologies.linker import DEFAULT_CUTOFF, Linker  # noqa: E402
from ontologies.obo import read_obo  # noqa: E402

ENTITY_TYPES = {"Sign_symptom", "Disease_disorder", "Medication"}
UNCERTAIN = {"UNCERTAIN", "MAYBE_NEG", "MAYBE_POS"}


def maccrobat_status(span, context) -> str:
    polarity = span.attributes.get("polarity")
    if polarity == "NEG":
        return "absent"
    if polarity in UNCERTAIN:
        return "possible"
    for c in context:
        if c.start <= span.start and span.end <= c.end:
            return "family" if c.label == "Family_history" else "historical"
    return "present"


def per_class(confusion: collections.Counter) -> dict:
    out = {}
    for c in ASSERTIONS:
        tp = confusion[(c, c)]
        pred = sum(v for (g, p), v in confusion.items() if p == c)
        gold = sum(v for (g, p), v in confusion.items() if g == c)
        prec, rec = tp / pred if pred else 0.0, tp / gold if gold else 0.0
        out[c] = {"gold": gold, "predicted": pred, "precision": round(prec, 3), "recall": round(rec, 3),
                  "f1": round(2 * prec * rec / (prec + rec), 3) if prec + rec else 0.0}
    return out


def assertion_eval(data_dir: Path, window: int | None) -> dict:
    rules = ContextRules() if window is None else ContextRules(window=window)
    docs = list(read_brat(data_dir / "maccrobat2020" / "brat"))
    out = {"window": rules.window}
    for split in ("train", "test"):
        confusion: collections.Counter = collections.Counter()
        for d in docs:
            if hash_split(d.id) != split:
                continue
            spans = [s for s in d.spans() if s.label in ENTITY_TYPES]
            context = [s for s in d.spans() if s.label in ("History", "Family_history")]
            for s, p in zip(spans, rules.assert_spans(d.text, spans)):
                confusion[(maccrobat_status(s, context), p.assertion)] += 1
        n = sum(confusion.values())
        correct = sum(v for (g, p), v in confusion.items() if g == p)
        majority = sum(v for (g, _), v in confusion.items() if g == "present")
        out[split] = {"mentions": n, "accuracy": round(correct / n, 3), "all_present_baseline": round(majority / n, 3),
                      "classes": per_class(confusion),
                      "confusion": {f"{g}->{p}": v for (g, p), v in sorted(confusion.items())}}
    return out


def xref_map() -> dict[str, set[str]]:
    """concept id → the MeSH / OMIM ids its ontology term cross-references."""
    out: dict[str, set[str]] = {}
    for name in ("doid", "hpo", "symp"):
        for t in read_obo(VENDORED[name]):
            ids = {x.replace("MSH:", "MESH:") for x in t.xrefs if x.startswith(("MESH:", "MSH:", "OMIM:"))}
            if ids:
                out[t.id] = ids
    return out


def gold_ids(concept: str | None) -> set[str]:
    if not concept or concept == "-1":
        return set()
    parts = concept.replace("+", "|").split("|")
    return {p if p.startswith(("OMIM:", "MESH:")) else f"MESH:{p}" for p in parts if p and p != "-1"}


def linking_eval(data_dir: Path, corpus: str, split: str, linker: Linker, xrefs: dict[str, set[str]]) -> dict:
    reachable_ids = set().union(*xrefs.values())
    counts: collections.Counter = collections.Counter()
    by_method: collections.Counter = collections.Counter()
    t0 = time.perf_counter()
    for d in load_corpus(corpus, data_dir, split):
        for s in d.spans():
            ids = gold_ids(s.concept)
            if s.label != DISEASE or not ids:
                continue
            reachable = bool(ids & reachable_ids)
            hit = linker.link(s.text, s.label)
            right = hit is not None and bool(xrefs.get(hit.concept, set()) & ids)
            counts["mentions"] += 1
            counts["reachable"] += reachable
            counts["linked"] += hit is not None
            counts["correct"] += right
            counts["scoreable"] += hit is not None and hit.concept in xrefs
            if hit is not None:
                by_method[(hit.method, right)] += 1
    n, r = counts["mentions"], counts["reachable"]
    return {
        "corpus": f"{corpus}:{split}", "mentions": n, "reachable": r, "linked": counts["linked"],
        "correct": counts["correct"], "accuracy": round(counts["correct"] / n, 3),
        "accuracy_reachable": round(counts["correct"] / r, 3),
        "precision_of_links": round(counts["correct"] / max(counts["linked"], 1), 3),
        "linked_with_xrefs": counts["scoreable"],
        "precision_of_links_with_xrefs": round(counts["correct"] / max(counts["scoreable"], 1), 3),
        "by_method": {f"{m}:{'right' if ok else 'wrong'}": v for (m, ok), v in sorted(by_method.items())},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--window", type=int, default=None, help="ConText window in words (default: the rules' default)")
    ap.add_argument("--cutoff", type=float, default=DEFAULT_CUTOFF, help="fuzzy linking cutoff (0-100)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    results = {"assertion": assertion_eval(args.data_dir, args.window)}
    linker, xrefs = Linker.from_config("open", cutoff=args.cutoff), xref_map()
    results["linking"] = {"cutoff": args.cutoff, "sets": [
        linking_eval(args.data_dir, corpus, split, linker, xrefs)
        for corpus, split in (("ncbi_disease", "dev"), ("ncbi_disease", "test"), ("bc5cdr", "test"))]}
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
