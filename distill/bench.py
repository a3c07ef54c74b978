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

LLM teachers on a CPU take tens of seconds per note, so a ``single_pass`` system is timed in one
pass without warm-up or latency calls (like an API teacher), optionally on only its first
``max_notes`` notes (its F1 is then on those notes, and every row says how many notes it ran on).
Its measurement can be kept in a ``record`` file and reused by a later run on the same notes with
the same settings (the row says when it was measured): a rerun then costs no LLM time. Its
prompt and answer tokens also price API models it was not (``priced_as``: rows marked "priced,
not run"). A :class:`Combination` is a teacher built from other rows' spans through
``distill.aggregate`` (e.g. LLM + dictionary): its seconds and dollars per note are its members'
sums plus the aggregation's own time, its F1 is on the notes all members labelled.
"""
from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
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
    ``single_pass``, ``max_notes``, ``record`` (with ``record_key``, what must match for reuse) and
    ``priced_as``: see the module docstring.
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
    single_pass: bool = False
    max_notes: int | None = None
    record: Path | None = None
    record_key: str = ""
    priced_as: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BenchError(f"system {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.billing not in ("machine", "api", "auto"):
            raise BenchError(f"system {self.name!r}: billing must be 'machine', 'api' or 'auto'")
        if self.max_notes is not None and (self.max_notes < 1 or not self.single_pass):
            raise BenchError(f"system {self.name!r}: max_notes needs single_pass and at least 1 note")
        if self.record is not None and not self.single_pass:
            raise BenchError(f"system {self.name!r}: only a single-pass measurement can be recorded and reused")


#: aggregation methods a combined teacher may use in the bench ("weighted" needs the members'
#: labels of a gold dev set, which the bench does not have)
COMBINE_METHODS = ("union", "priority", "majority", "label_model")


@dataclass
class Combination:
    """A teacher made of other systems' spans through ``distill.aggregate`` (``members``: names
    of benchmarked teacher rows, in priority order; ``options``: ``aggregate`` keywords)."""

    name: str
    members: tuple[str, ...]
    method: str = "union"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.members) < 2 or len(set(self.members)) != len(self.members):
            raise BenchError(f"combined teacher {self.name!r} needs at least two distinct members, got {self.members}")
        if self.method not in COMBINE_METHODS:
            raise BenchError(f"combined teacher {self.name!r}: method must be one of {COMBINE_METHODS}, "
                             f"got {self.method!r}")


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
                   size_bytes: int | None = None, single_pass: bool | None = None, max_notes: int | None = None,
                   record: str | os.PathLike | None = None, priced_as: Sequence[str] = (), **options: Any) -> System:
    """A teacher object or a ``family:name`` spec (built by ``teachers.registry`` when loaded);
    billed from its ledger when it carries an API price, else by machine time. LLM specs (any
    family but ``ontology``) are timed in a single pass unless ``single_pass`` says otherwise.

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
    if single_pass is None:
        single_pass = not spec.startswith("ontology:")
    key = json.dumps({"spec": spec, "options": {k: str(v) for k, v in options.items()}, "guard": _guard_version()},
                     sort_keys=True)
    return System(name or spec, TEACHER, load, size, billing="auto", group=spec, meta={"spec": spec},
                  single_pass=single_pass, max_notes=max_notes, record=Path(record) if record else None,
                  record_key=key, priced_as=tuple(priced_as))


def _guard_version() -> int | None:
    """The LLM loop guard's version: a new guard gives other answers, so old records are stale."""
    try:
        from teachers.llm import GUARD_VERSION
    except ImportError:
        return None
    return GUARD_VERSION


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


def _count_tokens(docs: Sequence[Document], systems: Sequence[System]) -> tuple[list[int], str]:
    """Per note: sub-word tokens of the first student's tokenizer, else whitespace words."""
    for s in systems:
        if s.kind.startswith("student"):
            from students import tagging

            path = Path(s.meta["path"])
            tok = tagging.load_tokenizer(path if path.is_dir() else path.parent)
            counts = [len(e.ids) for e in tok.encode_batch([d.text for d in docs], add_special_tokens=False)]
            return counts, f"sub-word tokens ({s.group} tokenizer)"
    return [len(d.text.split()) for d in docs], "whitespace words"


def _f1_block(report: Any) -> dict[str, Any]:
    d = report.to_dict()
    return {"micro": d["micro"], "macro_f1": d["macro_f1"], "labels": d["labels"], "documents": d["documents"],
            "problems": d["problems"]}


def _f1_on(gdocs: Sequence[Document], spans: Mapping[str, Sequence[Span]], cfg: BenchConfig) -> dict[str, Any] | None:
    """Exact and relaxed F1 on the gold documents that have predictions (None when none have)."""
    from distill.metrics import score

    gold = [d for d in gdocs if d.id in spans]
    if not gold:
        return None
    pred_docs = [Document(g.id, g.text, {}, {"pred": list(spans[g.id])}) for g in gold]
    return {m: _f1_block(score(gold, pred_docs, pred_layer="pred", labels=cfg.labels, match=m, bootstrap=cfg.bootstrap))
            for m in ("exact", "relaxed")}


def _doc_hash(docs: Sequence[Document]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(f"{d.id}\0{len(d.text)}\0".encode())
        h.update(d.text.encode("utf-8"))
    return h.hexdigest()


def _read_record(s: System, docs: Sequence[Document]) -> dict[str, Any] | None:
    """An earlier measurement of ``s`` on the same notes with the same settings, else None."""
    if s.record is None or not s.record.is_file():
        return None
    try:
        rec = json.loads(s.record.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a half-written record is measured again
    return rec if rec.get("key") == s.record_key and rec.get("doc_hash") == _doc_hash(docs) else None


def _write_record(s: System, docs: Sequence[Document], row: Mapping[str, Any], measured: Mapping[str, Any]) -> None:
    assert s.record is not None
    s.record.parent.mkdir(parents=True, exist_ok=True)
    keep = ("name", "kind", "group", "device", "billing", "model", "size_bytes", "meta", "load_seconds", "load_rss_mb",
            "stats")
    rec = {"key": s.record_key, "doc_hash": _doc_hash(docs), "row": {k: row[k] for k in keep if k in row}, **measured}
    tmp = s.record.with_name(s.record.name + ".tmp")
    tmp.write_text(json.dumps(rec, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, s.record)


def run_bench(
    systems: Sequence[System],
    docs: Sequence[Document],
    gold_sets: Mapping[str, Sequence[Document]] | None = None,
    config: BenchConfig | None = None,
    combined: Sequence[Combination] = (),
) -> dict[str, Any]:
    """Measure every system on ``docs`` and score it on each gold set; returns results.json's dict."""
    from tqdm.auto import tqdm

    cfg = config or BenchConfig()
    docs = [Document(d.id, d.text, dict(d.meta)) for d in docs]  # systems never see gold layers
    if not docs:
        raise BenchError("no documents to benchmark on")
    if not systems:
        raise BenchError("no systems to benchmark")
    names = [s.name for s in systems] + [c.name for c in combined]
    if len(set(names)) != len(names):
        raise BenchError(f"system names must be unique: {names}")
    teachers = {s.name for s in systems if s.kind == TEACHER}
    for c in combined:
        unknown = [m for m in c.members if m not in teachers]
        if unknown:
            raise BenchError(f"combined teacher {c.name!r}: {unknown} are not benchmarked teachers ({sorted(teachers)})")
    started = dt.datetime.now(dt.timezone.utc)
    info_before = machine_info()
    per_doc_tokens, token_unit = _count_tokens(docs, systems)
    n_chars = sum(len(d.text) for d in docs)
    sys_docs = {s.name: docs[: s.max_notes] if s.max_notes else docs for s in systems}
    records = {s.name: rec for s in systems if (rec := _read_record(s, sys_docs[s.name])) is not None}

    # 1. load each system (time and memory it adds), then warm up (excluded from timing); a
    # system with a matching record is not loaded at all
    loaded: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    billing: dict[str, str] = {}
    price: dict[str, Any] = {}
    for s in systems:
        if s.name in records:
            rec = records[s.name]
            rows[s.name] = {**rec["row"], "name": s.name,
                            "measured": {"at": rec["measured_at"], "load_average": rec["load_average"],
                                         "reused_from": str(s.record)}}
            billing[s.name], price[s.name] = rec["row"]["billing"], rec["row"]["model"]
            continue
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
            "measured": {"at": started.isoformat(timespec="seconds"), "load_average": info_before["load_average"]},
        }
        run = _runner(obj)
        if cfg.warmup_docs and billing[s.name] != "api" and not s.single_pass:
            run(docs[: cfg.warmup_docs])

    # 2. throughput. API teachers and single-pass systems: one pass over their notes (a second
    # would hit the cache, cost money, or take minutes), their ledger delta is their cost. Local
    # systems: ``repeats`` passes, each cut into slices of ``slice_docs`` notes run round-robin
    # (A, B, C on slice 1, then on slice 2, ...), so load from other processes drifting during the
    # run hits every system alike.
    times: dict[str, list[float]] = {s.name: [] for s in systems}
    cpu: dict[str, list[float]] = {s.name: [] for s in systems}
    peaks: dict[str, int] = {s.name: 0 for s in systems}
    preds: dict[str, list[list[Span]]] = {s.name: [] for s in systems}
    usage: dict[str, dict[str, Any] | None] = {}
    step = cfg.slice_docs if cfg.slice_docs and cfg.slice_docs > 0 else len(docs)
    slices = [docs[i : i + step] for i in range(0, len(docs), step)]
    once = [s for s in systems if s.name not in records and (billing[s.name] == "api" or s.single_pass)]
    local = [s for s in systems if s.name not in records and s not in once]
    bar = tqdm(total=len(once) + max(1, cfg.repeats) * len(slices) * len(local), desc="bench", unit="slice",
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

    start_usage = {s.name: _usage(loaded[s.name]) for s in systems if s.name in loaded}
    for s in once:
        wall, used = timed(s, sys_docs[s.name], keep=True)
        times[s.name].append(wall)
        cpu[s.name].append(used)
        usage[s.name] = _usage_delta(start_usage[s.name], _usage(loaded[s.name]))
    for r in range(max(1, cfg.repeats) if local else 0):
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
    for name, rec in records.items():
        times[name], cpu[name], peaks[name], usage[name] = [rec["seconds"]], [rec["cpu_seconds"]], rec["peak_bytes"], rec["usage"]
        preds[name] = [[Span.from_dict(x) for x in rec["spans"][d.id]] for d in sys_docs[name]]
    bar.close()

    # 3. latency: single-note calls, interleaved note by note
    lat: dict[str, list[float]] = {s.name: [] for s in local if billing[s.name] != "api"}
    for d in docs[: cfg.latency_docs]:
        for s in systems:
            if s.name in lat:
                run = _runner(loaded[s.name])
                time.sleep(SETTLE_S)
                t0 = time.perf_counter()
                run([d])
                lat[s.name].append(time.perf_counter() - t0)

    # 4. F1 on each gold set: the timed predictions where the gold set holds the timed notes;
    # local systems label another gold set's notes untimed, single-pass ones are scored on theirs
    gold_sets = dict(gold_sets or {})
    doc_ids = [d.id for d in docs]
    spans_by_id: dict[str, dict[str, list[Span]]] = {}
    for s in systems:
        row = rows[s.name]
        mine = sys_docs[s.name]
        n_tokens = sum(per_doc_tokens[: len(mine)])
        med = statistics.median(times[s.name])
        med_cpu = statistics.median(cpu[s.name])
        row["speed"] = {
            "notes": len(mine), "seconds": med, "seconds_all": [round(t, 4) for t in times[s.name]],
            "cpu_seconds": med_cpu,
            "notes_per_s": len(mine) / med if med > 0 else float("inf"),
            "notes_per_cpu_s": len(mine) / med_cpu if med_cpu > 0 else None,
            "tokens_per_s": n_tokens / med if med > 0 else float("inf"),
            "chars_per_s": sum(len(d.text) for d in mine) / med if med > 0 else float("inf"),
            "latency_ms": ({"p50": 1000 * _percentile(lat[s.name], 0.5), "p95": 1000 * _percentile(lat[s.name], 0.95),
                            "n": len(lat[s.name])} if lat.get(s.name) else None),
        }
        row["memory"] = {"rss_mb": round((row["load_rss_mb"] * 2**20 + peaks[s.name]) / 2**20, 1),
                         "load_rss_mb": row["load_rss_mb"], "peak_run_rss_growth_mb": round(peaks[s.name] / 2**20, 1),
                         "method": "psutil RSS (load growth + peak growth while running)"}
        failures = sum(1 for spans in preds[s.name] if hasattr(spans, "reason"))  # teachers.base.LabelFailure
        row["failures"] = failures
        row["usage"] = usage[s.name]
        if s.name in loaded and getattr(loaded[s.name], "stats", None):
            row["stats"] = dict(loaded[s.name].stats)  # LLM teachers: entities, unaligned strings, loop stops
        row["cost"] = _cost(billing[s.name], price[s.name], row, usage[s.name], cfg.prices)
        spans_by_id[s.name] = dict(zip((d.id for d in mine), preds[s.name]))  # a failed note scores as empty
        row["f1"] = {}
        for gname, gdocs in gold_sets.items():
            gdocs = list(gdocs)
            spans = spans_by_id[s.name]
            if s.name in local and [d.id for d in gdocs] != doc_ids:
                plain = [Document(d.id, d.text, dict(d.meta)) for d in gdocs]
                spans = dict(zip((d.id for d in gdocs), _runner(loaded[s.name])(plain)))
            f1 = _f1_on(gdocs, spans, cfg)
            if f1 is not None:
                row["f1"][gname] = f1
        if s.record is not None and s.name not in records and not failures:
            _write_record(s, mine, row, {
                "measured_at": row["measured"]["at"], "load_average": row["measured"]["load_average"],
                "seconds": med, "cpu_seconds": med_cpu, "peak_bytes": peaks[s.name], "usage": usage[s.name],
                "spans": {d: [x.to_dict() for x in sp] for d, sp in spans_by_id[s.name].items()}})
    loaded.clear()
    gc.collect()

    # 5. rows in reading order: each teacher with the API models priced from its ledger, the
    # combined teachers, then the students
    ordered: list[dict[str, Any]] = []
    for s in systems:
        if s.kind == TEACHER:
            ordered.append(rows[s.name])
            ordered += priced_rows(rows[s.name], s.priced_as, cfg.prices.batch_api)
    for c in combined:
        ordered.append(combined_row(c, rows, spans_by_id, docs, per_doc_tokens, gold_sets, cfg))
    ordered += [rows[s.name] for s in systems if s.kind != TEACHER]

    results = {
        "format": 1,
        "created": started.isoformat(timespec="seconds"),
        "seconds": round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1),
        "machine": info_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "config": cfg.to_dict(),
        "documents": {"n": len(docs), "chars": n_chars, "tokens": sum(per_doc_tokens), "token_unit": token_unit,
                      "gold_sets": {k: len(v) for k, v in gold_sets.items()}},
        "systems": ordered,
    }
    results["speedups"] = student_speedups(results)
    return results


def priced_rows(row: Mapping[str, Any], models: Sequence[str], batch: bool = False) -> list[dict[str, Any]]:
    """Rows "<model> (priced, not run)": ``row``'s measured prompt and answer tokens at each API
    model's dated price. The tokens are the measured model's own tokenizer counts, standing in
    for each API's tokenizer; no F1 and no speed, since those models did not run."""
    out = []
    u = row.get("usage") or {}
    for model in models:
        try:
            if u.get("cached_requests") or not u.get("input_tokens"):
                raise CostError(f"{row['name']} has no measured token ledger to price")
            cost = api_cost_per_1k(model, int(u["input_tokens"]), int(u.get("output_tokens", 0)), row["speed"]["notes"],
                                   batch=batch)
            cost["tokens_from"] = row["name"]
        except CostError as e:
            cost = {"usd_per_1k_notes": None, "error": str(e)}
        out.append({"name": f"{model} (priced, not run)", "kind": TEACHER, "group": model, "device": None,
                    "billing": "api", "model": model, "priced_only": True, "size_bytes": None,
                    "meta": {"tokens_from": row["name"]}, "speed": None, "memory": None, "failures": 0, "usage": None,
                    "cost": cost, "f1": {}})
    return out


def combined_row(c: Combination, rows: Mapping[str, Mapping[str, Any]], spans_by_id: Mapping[str, Mapping[str, list[Span]]],
                 docs: Sequence[Document], per_doc_tokens: Sequence[int], gold_sets: Mapping[str, Sequence[Document]],
                 cfg: BenchConfig) -> dict[str, Any]:
    """The row of a combined teacher: its members' spans on the notes all of them labelled,
    aggregated; per note it costs the sum of its members' seconds and dollars (they both run)."""
    from distill.aggregate import aggregate
    from distill.documents import SILVER

    members = [rows[m] for m in c.members]
    common = [(d, k) for k, d in enumerate(docs)  # notes every member labelled (a LabelFailure carries a reason)
              if all(d.id in spans_by_id[m] and not hasattr(spans_by_id[m][d.id], "reason") for m in c.members)]
    if not common:
        raise BenchError(f"combined teacher {c.name!r}: its members labelled no note in common")
    layered = [d.with_layers(**{m: spans_by_id[m][d.id] for m in c.members}) for d, _ in common]
    t0 = time.perf_counter()
    res = aggregate(layered, list(c.members), c.method, cfg.labels, **c.options)
    agg_s = time.perf_counter() - t0
    n = len(common)
    seconds = sum(r["speed"]["seconds"] / r["speed"]["notes"] for r in members) * n + agg_s
    costs = {r["name"]: (r.get("cost") or {}).get("usd_per_1k_notes") for r in members}
    if all(v is not None for v in costs.values()):
        cost: dict[str, Any] = {"usd_per_1k_notes": sum(costs.values()), "basis": "sum of members", "members": costs}
    else:
        cost = {"usd_per_1k_notes": None, "error": f"a member has no cost: {[k for k, v in costs.items() if v is None]}"}
    spans = {d.id: d.layers.get(SILVER, []) for d in res.docs}
    f1 = {g: s for g, gdocs in gold_sets.items() if (s := _f1_on(list(gdocs), spans, cfg)) is not None}
    sizes = [r.get("size_bytes") for r in members]
    return {
        "name": c.name, "kind": TEACHER, "group": c.name, "device": "cpu", "billing": "combined", "model": None,
        "size_bytes": sum(x for x in sizes if x) or None,
        "meta": {"members": list(c.members), "method": c.method, "options": dict(c.options)},
        "load_seconds": round(sum(r["load_seconds"] for r in members), 3),
        "load_rss_mb": round(sum(r["load_rss_mb"] for r in members), 1),
        "speed": {"notes": n, "seconds": seconds, "seconds_all": [round(seconds, 4)], "cpu_seconds": None,
                  "notes_per_s": n / seconds if seconds > 0 else float("inf"), "notes_per_cpu_s": None,
                  "tokens_per_s": sum(per_doc_tokens[k] for _, k in common) / seconds if seconds > 0 else float("inf"),
                  "chars_per_s": sum(len(d.text) for d, _ in common) / seconds if seconds > 0 else float("inf"),
                  "latency_ms": None, "aggregate_seconds": round(agg_s, 4),
                  "method": "members' measured seconds per note, summed, + the aggregation's own time"},
        "memory": {"rss_mb": round(sum((r.get("memory") or {}).get("rss_mb") or 0 for r in members), 1),
                   "method": "sum of the members' RSS (both are loaded)"},
        "failures": 0, "usage": None, "cost": cost, "f1": f1, "aggregate_log": res.log.lines(),
    }


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
