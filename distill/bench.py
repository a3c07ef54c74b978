"""Speed, memory, size, cost and F1 of every system of a run, measured side by side in one process.

A *system* is anything that labels notes: a teacher (``.name``, ``.label(docs)``, ``.usage``) or
a student predictor (torch, ONNX fp32, ONNX int8; ``.predict_texts``). Each is loaded, warmed up
on a few notes (excluded from timing), then timed on the same documents.

Fairness on a shared machine: each timed pass is cut into slices of a few notes that run
**round-robin** (slice 1 on A, B, C; slice 2 on A, B, C; ...) and the median pass is reported, so
load from other processes drifting during the run hits every system alike instead of whichever
happened to run then. The load average is recorded with the numbers.

What each number means:
- notes/s, tokens/s: documents (sub-word tokens of the student tokenizer, or whitespace words
  when no student is benchmarked) per second of the median throughput pass over all notes;
  ``notes_per_cpu_s`` divides by the process CPU time instead (steadier under load, but it
  counts the system's own threads' spin-waiting too; each timed call starts ``SETTLE_S`` after
  the previous one, so another system's spinning threads are not charged to it).
- latency p50/p95: wall time of a single-note call (batch of one), per note, on the first
  ``latency_docs`` notes. API teachers are not latency-timed (each call would be paid again).
- memory: resident-set-size (psutil RSS) growth from loading the system, plus the peak RSS
  growth during its passes (sampled every few ms by a thread). RSS, not tracemalloc, because
  onnxruntime and torch allocate outside Python's allocator, where tracemalloc cannot see.
  In one process, memory the allocator kept from an earlier system can be reused, so treat small
  differences as noise.
- size: the model weight files on disk (teachers: their ``size_bytes`` when they report one).
- cost: see ``distill.cost``; F1: ``distill.metrics.score`` (exact and relaxed, bootstrap CIs).
"""
from __future__ import annotations

import datetime as dt
import gc
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from distill.cost import CostError, Prices, api_cost_per_1k, machine_cost_per_1k
from distill.documents import DEFAULT_LABELS, Document, Span

TEACHER = "teacher"
STUDENT_TORCH = "student-torch"
STUDENT_ONNX = "student-onnx-fp32"
STUDENT_INT8 = "student-onnx-int8"
KINDS = (TEACHER, STUDENT_TORCH, STUDENT_ONNX, STUDENT_INT8)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


#: pause before each timed call: onnxruntime's and OpenMP's idle worker threads keep spinning for
#: up to ~0.2 s after a run, and process CPU time (and the cores) would charge that to the next
#: system (measured: a 2 ms teacher after an ONNX student used 4.5x its wall time in CPU)
SETTLE_S = 0.2


class BenchError(ValueError):
    """A benchmark that cannot produce honest numbers (no documents, a system failing to load)."""


@dataclass
class System:
    """One row of the comparison: how to load it and how to bill and describe it.

    ``load()`` returns an object with ``predict_texts(texts)`` or ``label(docs)``. ``billing`` is
    "machine" (seconds × hourly price), "api" (ledger tokens × the price of ``model``), or "auto":
    decided once loaded — a teacher carrying a non-zero ``price`` (the LLM teachers' dated
    ``teachers.cost.Price``) is billed from its ledger, anything else by machine time.
    ``group`` ties the torch / ONNX variants of one student together for speed-up ratios.
    """

    name: str
    kind: str
    load: Callable[[], Any]
    size_bytes: int | None = None
    device: str = "cpu"
    billing: str = "machine"
    model: str | None = None
    group: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BenchError(f"system {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.billing not in ("machine", "api", "auto"):
            raise BenchError(f"system {self.name!r}: billing must be 'machine', 'api' or 'auto'")


@dataclass
class BenchConfig:
    warmup_docs: int = 2
    repeats: int = 3
    latency_docs: int = 10
    slice_docs: int = 8
    bootstrap: int = 1000
    labels: tuple[str, ...] = DEFAULT_LABELS
    prices: Prices = field(default_factory=Prices)
    threads: int | None = None
    sample_interval_s: float = 0.005
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["prices"] = self.prices.to_dict()
        return d


# --- systems -----------------------------------------------------------------------------------


def _files_size(paths: Iterable[Path]) -> int | None:
    sizes = [p.stat().st_size for p in paths if p.is_file()]
    return sum(sizes) if sizes else None


def student_systems(
    model_dir: str | os.PathLike,
    onnx_dir: str | os.PathLike | None = None,
    name: str | None = None,
    threads: int | None = None,
    batch_size: int = 32,
    variants: Sequence[str] = ("torch", "onnx-fp32", "onnx-int8"),
) -> list[System]:
    """The torch student and its ONNX exports (those that exist) as three comparable systems."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise BenchError(f"{model_dir} is not a student model directory (no config.json)")
    onnx = Path(onnx_dir) if onnx_dir is not None else model_dir / "onnx"
    label = name or model_dir.name
    out: list[System] = []
    if "torch" in variants:
        def load_torch() -> Any:
            import torch

            from students.predict import TorchPredictor

            if threads:
                torch.set_num_threads(threads)
            return TorchPredictor.from_dir(model_dir, batch_size=batch_size)

        weights = [p for p in model_dir.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.name != "training_args.bin"]
        out.append(System(f"{label} (torch)", STUDENT_TORCH, load_torch, _files_size(weights), group=label,
                          meta={"path": str(model_dir)}))
    for variant, fname, kind, tag in (("onnx-fp32", "model.onnx", STUDENT_ONNX, "ONNX fp32"),
                                      ("onnx-int8", "model.int8.onnx", STUDENT_INT8, "ONNX int8")):
        path = onnx / fname
        if variant not in variants or not path.is_file():
            continue

        def load_onnx(path: Path = path) -> Any:
            from students.runtime import OnnxPredictor

            return OnnxPredictor(path, threads=threads, batch_size=batch_size)

        out.append(System(f"{label} ({tag})", kind, load_onnx, path.stat().st_size, group=label,
                          meta={"path": str(path)}))
    return out


def teacher_system(teacher: Any, *, name: str | None = None, allow_external: bool = False,
                   size_bytes: int | None = None, **options: Any) -> System:
    """A teacher object or a ``family:name`` spec (built by ``teachers.registry`` when loaded);
    billed from its ledger when it carries an API price, else by machine time.

    LLM teachers built from a spec get no response cache: a cached answer costs no tokens and no
    time, so the bench would report a free, instant teacher. A teacher object that answers from
    its cache during the bench gets no cost (the report says why)."""
    spec = teacher if isinstance(teacher, str) else teacher.name
    if isinstance(teacher, str):
        if not spec.startswith("ontology:"):  # the ontology teacher's cache is its compiled lexicon
            options = {**options, "cache": False}

        def load() -> Any:
            from teachers.registry import make_teacher

            return make_teacher(spec, allow_external=allow_external, **options)
    else:
        def load() -> Any:
            return teacher
    size = size_bytes if size_bytes is not None else getattr(teacher, "size_bytes", None)
    return System(name or spec, TEACHER, load, size, billing="auto", group=spec, meta={"spec": spec})


def _resolve_billing(s: System, obj: Any) -> tuple[str, Any]:
    """("api", price) for a teacher with a non-zero token price, else ("machine", None)."""
    price = getattr(obj, "price", None)
    if s.billing == "api" or (s.billing == "auto" and price is not None
                              and (getattr(price, "input_per_1m", 0) or getattr(price, "output_per_1m", 0))):
        return "api", price if price is not None else s.model
    return "machine", None


# --- measurement -------------------------------------------------------------------------------


class PeakRSS:
    """Context manager sampling this process's RSS in a thread; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.005):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.start)


def _runner(obj: Any) -> Callable[[Sequence[Document]], list[list[Span]]]:
    """One call shape for predictors (``predict_texts``) and teachers (``label``)."""
    if hasattr(obj, "predict_texts"):
        return lambda docs: list(obj.predict_texts([d.text for d in docs]))
    if hasattr(obj, "label"):
        return lambda docs: list(obj.label(docs))
    raise BenchError(f"{type(obj).__name__} has neither predict_texts() nor label()")


def _usage(obj: Any) -> dict[str, Any] | None:
    u = getattr(obj, "usage", None)
    if u is None:
        return None
    return dict(u.to_dict() if hasattr(u, "to_dict") else vars(u))


def _usage_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    if before is None or after is None:
        return None
    return {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], (int, float))}


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (CPU model, cores, memory, GPU, load, versions)."""
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    if "torch" in sys.modules:
        info["torch"] = sys.modules["torch"].__version__
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        info["gpu"] = [g.strip() for g in smi.stdout.splitlines() if g.strip()] if smi.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        info["gpu"] = []
    return info


def _percentile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _count_tokens(docs: Sequence[Document], systems: Sequence[System]) -> tuple[int, str]:
    for s in systems:
        if s.kind.startswith("student"):
            from students import tagging

            path = Path(s.meta["path"])
            tok = tagging.load_tokenizer(path if path.is_dir() else path.parent)
            n = sum(len(e.ids) for e in tok.encode_batch([d.text for d in docs], add_special_tokens=False))
            return n, f"sub-word tokens ({s.group} tokenizer)"
    return sum(len(d.text.split()) for d in docs), "whitespace words"


def _f1_block(report: Any) -> dict[str, Any]:
    d = report.to_dict()
    return {"micro": d["micro"], "macro_f1": d["macro_f1"], "labels": d["labels"], "documents": d["documents"],
            "problems": d["problems"]}


def run_bench(
    systems: Sequence[System],
    docs: Sequence[Document],
    gold_sets: Mapping[str, Sequence[Document]] | None = None,
    config: BenchConfig | None = None,
) -> dict[str, Any]:
    """Measure every system on ``docs`` and score it on each gold set; returns results.json's dict."""
    from tqdm.auto import tqdm

    from distill.metrics import score

    cfg = config or BenchConfig()
    docs = [Document(d.id, d.text, dict(d.meta)) for d in docs]  # systems never see gold layers
    if not docs:
        raise BenchError("no documents to benchmark on")
    if not systems:
        raise BenchError("no systems to benchmark")
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise BenchError(f"system names must be unique: {names}")
    started = dt.datetime.now(dt.timezone.utc)
    info_before = machine_info()
    n_tokens, token_unit = _count_tokens(docs, systems)
    n_chars = sum(len(d.text) for d in docs)

    # 1. load each system (time and memory it adds), then warm up (excluded from timing)
    loaded: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    billing: dict[str, str] = {}
    price: dict[str, Any] = {}
    for s in systems:
        gc.collect()
        with PeakRSS(cfg.sample_interval_s) as mem:
            t0 = time.perf_counter()
            try:
                obj = s.load()
            except Exception as e:  # noqa: BLE001 - name the failing system, keep the cause
                raise BenchError(f"system {s.name!r} failed to load: {e}") from e
            load_s = time.perf_counter() - t0
        loaded[s.name] = obj
        billing[s.name], price[s.name] = _resolve_billing(s, obj)
        device = getattr(obj, "device", s.device)
        rows[s.name] = {
            "name": s.name, "kind": s.kind, "group": s.group, "device": device if isinstance(device, str) else s.device,
            "billing": billing[s.name], "model": getattr(price[s.name], "model", price[s.name]),
            "size_bytes": s.size_bytes, "meta": s.meta,
            "load_seconds": round(load_s, 3), "load_rss_mb": round(mem.growth / 2**20, 1),
        }
        run = _runner(obj)
        if cfg.warmup_docs and billing[s.name] != "api":
            run(docs[: cfg.warmup_docs])

    # 2. throughput. API teachers: one pass over all notes (a second would hit the cache, or cost
    # money), their ledger delta is their cost. Local systems: ``repeats`` passes, each cut into
    # slices of ``slice_docs`` notes run round-robin (A, B, C on slice 1, then on slice 2, ...), so
    # load from other processes drifting during the run hits every system alike.
    times: dict[str, list[float]] = {s.name: [] for s in systems}
    cpu: dict[str, list[float]] = {s.name: [] for s in systems}
    peaks: dict[str, int] = {s.name: 0 for s in systems}
    preds: dict[str, list[list[Span]]] = {s.name: [] for s in systems}
    usage: dict[str, dict[str, Any] | None] = {}
    step = cfg.slice_docs if cfg.slice_docs and cfg.slice_docs > 0 else len(docs)
    slices = [docs[i : i + step] for i in range(0, len(docs), step)]
    local = [s for s in systems if billing[s.name] != "api"]
    api = [s for s in systems if billing[s.name] == "api"]
    bar = tqdm(total=len(api) + max(1, cfg.repeats) * len(slices) * len(local), desc="bench", unit="slice",
               disable=not cfg.progress)

    def timed(s: System, part: Sequence[Document], keep: bool) -> tuple[float, float]:
        time.sleep(SETTLE_S)  # the previous system's thread pool stops spinning before this one's CPU clock starts
        with PeakRSS(cfg.sample_interval_s) as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            out = _runner(loaded[s.name])(part)
            wall, used = time.perf_counter() - t0, time.process_time() - c0
        if len(out) != len(part):
            raise BenchError(f"system {s.name!r} returned {len(out)} results for {len(part)} notes")
        peaks[s.name] = max(peaks[s.name], mem.growth)
        if keep:
            preds[s.name].extend(out)
        bar.update()
        return wall, used

    start_usage = {s.name: _usage(loaded[s.name]) for s in systems}
    for s in api:
        wall, used = timed(s, docs, keep=True)
        times[s.name].append(wall)
        cpu[s.name].append(used)
    for r in range(max(1, cfg.repeats)):
        acc = {s.name: [0.0, 0.0] for s in local}
        for part in slices:
            for s in local:
                wall, used = timed(s, part, keep=r == 0)
                acc[s.name][0] += wall
                acc[s.name][1] += used
        for name, (wall, used) in acc.items():
            times[name].append(wall)
            cpu[name].append(used)
        if r == 0:  # the ledger of the first pass is what the notes cost once
            usage.update({s.name: _usage_delta(start_usage[s.name], _usage(loaded[s.name])) for s in local})
    usage.update({s.name: _usage_delta(start_usage[s.name], _usage(loaded[s.name])) for s in api})
    bar.close()

    # 3. latency: single-note calls, interleaved note by note
    lat: dict[str, list[float]] = {s.name: [] for s in systems if billing[s.name] != "api"}
    for d in docs[: cfg.latency_docs]:
        for s in systems:
            if s.name in lat:
                run = _runner(loaded[s.name])
                time.sleep(SETTLE_S)
                t0 = time.perf_counter()
                run([d])
                lat[s.name].append(time.perf_counter() - t0)

    # 4. F1 on each gold set (reusing the timed predictions when the gold set is the timed docs)
    gold_sets = dict(gold_sets or {})
    doc_ids = [d.id for d in docs]
    for s in systems:
        row = rows[s.name]
        med = statistics.median(times[s.name])
        row["speed"] = {
            "notes": len(docs), "seconds": med, "seconds_all": [round(t, 4) for t in times[s.name]],
            "cpu_seconds": statistics.median(cpu[s.name]),
            "notes_per_s": len(docs) / med if med > 0 else float("inf"),
            "notes_per_cpu_s": len(docs) / statistics.median(cpu[s.name]) if statistics.median(cpu[s.name]) > 0 else None,
            "tokens_per_s": n_tokens / med if med > 0 else float("inf"),
            "chars_per_s": n_chars / med if med > 0 else float("inf"),
            "latency_ms": ({"p50": 1000 * _percentile(lat[s.name], 0.5), "p95": 1000 * _percentile(lat[s.name], 0.95),
                            "n": len(lat[s.name])} if lat.get(s.name) else None),
        }
        row["memory"] = {"rss_mb": round((row["load_rss_mb"] * 2**20 + peaks[s.name]) / 2**20, 1),
                         "load_rss_mb": row["load_rss_mb"], "peak_run_rss_growth_mb": round(peaks[s.name] / 2**20, 1),
                         "method": "psutil RSS (load growth + peak growth while running)"}
        failures = sum(1 for spans in preds[s.name] if hasattr(spans, "reason"))  # teachers.base.LabelFailure
        row["failures"] = failures
        row["usage"] = usage[s.name]
        row["cost"] = _cost(billing[s.name], price[s.name], row, usage[s.name], cfg.prices)
        row["f1"] = {}
        for gname, gdocs in gold_sets.items():
            gdocs = list(gdocs)
            if [d.id for d in gdocs] == doc_ids:
                spans = preds[s.name]
            else:
                plain = [Document(d.id, d.text, dict(d.meta)) for d in gdocs]
                spans = _runner(loaded[s.name])(plain)
            pred_docs = [Document(g.id, g.text, {}, {"pred": list(sp)}) for g, sp in zip(gdocs, spans)]
            row["f1"][gname] = {m: _f1_block(score(gdocs, pred_docs, pred_layer="pred", labels=cfg.labels, match=m,
                                                   bootstrap=cfg.bootstrap)) for m in ("exact", "relaxed")}
    loaded.clear()
    gc.collect()

    results = {
        "format": 1,
        "created": started.isoformat(timespec="seconds"),
        "seconds": round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1),
        "machine": info_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "config": cfg.to_dict(),
        "documents": {"n": len(docs), "chars": n_chars, "tokens": n_tokens, "token_unit": token_unit,
                      "gold_sets": {k: len(v) for k, v in gold_sets.items()}},
        "systems": [rows[s.name] for s in systems],
    }
    results["speedups"] = student_speedups(results)
    return results


def _cost(billing: str, price: Any, row: dict[str, Any], usage: dict[str, Any] | None, prices: Prices) -> dict[str, Any]:
    notes = row["speed"]["notes"]
    try:
        if usage and usage.get("cached_requests"):
            raise CostError(f"{usage['cached_requests']} of its requests were answered from its response cache during "
                            f"the bench, so neither its tokens nor its time were measured; bench it without a cache")
        if billing == "api":
            if not usage:
                raise CostError("an API teacher without a usage ledger")
            out = api_cost_per_1k(price or row["name"], int(usage.get("input_tokens", 0)),
                                  int(usage.get("output_tokens", 0)), notes, batch=prices.batch_api)
            return out
        return machine_cost_per_1k(row["speed"]["seconds"], notes, prices.for_device(row["device"]))
    except CostError as e:
        return {"usd_per_1k_notes": None, "error": str(e)}


def student_speedups(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """notes/s of each ONNX variant over the torch student of the same group."""
    rows = results["systems"]
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["kind"] != STUDENT_TORCH:
            continue
        base = r["speed"]["notes_per_s"]
        for o in rows:
            if o["group"] == r["group"] and o["kind"] in (STUDENT_ONNX, STUDENT_INT8) and base:
                out.setdefault(r["group"], {})[o["kind"]] = round(o["speed"]["notes_per_s"] / base, 3)
    return out
