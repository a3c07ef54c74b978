"""Benchmark: ontology lexicon load time and matcher throughput on the MTSamples notes.

    python experiments/bench_matcher.py [--data-dir ../shared/data] [--config open] [--out experiments/bench_matcher.md]

Measures, on one core (a single process, no threads):
- cold build: compile the lexicon from the vendored release files into an empty cache dir;
- cached load: a fresh Python process constructing ``OntologyTeacher(config)`` from the cache
  (imports included, i.e. what ``distill label`` pays before the first note);
- throughput: ``Matcher.find`` over every MTSamples note, in MB of UTF-8 text per CPU-second of
  this one process (best of five passes). CPU time, not wall time, because the dev machine is
  shared: with other jobs running, wall time measures the neighbours. Wall time is reported too.
A dev benchmark: it reads the licensed corpora in ../shared, which the library never does.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs{mem}, Python {platform.python_version()}, {platform.system()}"


def cached_load_seconds(config: str, cache: str) -> float:
    code = (
        "import time; t=time.perf_counter(); from teachers.ontology import OntologyTeacher; "
        f"t0=OntologyTeacher({config!r}); assert t0.lexicon_info['hit']; print(time.perf_counter()-t)"
    )
    env = dict(os.environ, DISTILL_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
    runs = [float(subprocess.check_output([sys.executable, "-c", code], env=env, cwd=ROOT)) for _ in range(3)]
    return min(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--config", default="open")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "bench_matcher.md"))
    args = ap.parse_args()

    notes_path = Path(args.data_dir) / "mtsamples" / "mtsamples_unique.jsonl.gz"
    with gzip.open(notes_path, "rt", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6

    with tempfile.TemporaryDirectory() as cache:
        os.environ["DISTILL_CACHE_DIR"] = cache
        from teachers.ontology import OntologyTeacher

        t0 = time.perf_counter()
        teacher = OntologyTeacher(args.config)
        cold = time.perf_counter() - t0
        warm = cached_load_seconds(args.config, cache)

    find = teacher.matcher.find
    passes, walls = [], []
    for _ in range(5):
        t0, w0 = time.process_time(), time.perf_counter()
        n_spans = sum(len(find(t)) for t in texts)
        passes.append(time.process_time() - t0)
        walls.append(time.perf_counter() - w0)
    best = min(passes)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = {
        "machine": machine(),
        "config": args.config,
        "lexicon keys": len(teacher.matcher),
        "notes": len(texts),
        "text MB (UTF-8)": round(mb, 2),
        "spans found": n_spans,
        "cold build s": round(cold, 2),
        "cached load s (fresh process, imports included)": round(warm, 2),
        "matching CPU s (best of 5)": round(best, 2),
        "matching wall s (best of 5)": round(min(walls), 2),
        "1-min load average during the run": round(load, 1),
        "throughput MB/s (one core, CPU time)": round(mb / best, 2),
        "throughput MB/s (wall)": round(mb / min(walls), 2),
        "notes/s (CPU time)": round(len(texts) / best),
    }
    md = [
        "# Ontology matcher benchmark",
        "",
        f"Command: `python experiments/bench_matcher.py --config {args.config}` "
        f"(MTSamples notes from `{notes_path.relative_to(Path(args.data_dir).parent.parent) if notes_path.is_relative_to(Path(args.data_dir).parent.parent) else notes_path}`).",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows.items()],
        "",
        "Targets (issue 4): throughput ≥ 5 MB/s on one core; teacher load ≤ 2 s from the cache.",
        "",
    ]
    Path(args.out).write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()
