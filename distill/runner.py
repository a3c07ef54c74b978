"""``distill run RECIPE.toml``: label → aggregate → train → export → bench → report.

Each step writes into its own folder under the recipe's output dir together with a manifest
(:mod:`distill.manifest`); a rerun skips steps whose manifest still matches and redoes the rest.
Resumability inside a step comes from the step itself: labelling appends one finished note per
line (a kill loses at most the note in flight) and training resumes from its last checkpoint.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from distill.documents import GOLD, SILVER, Document
from distill.io.jsonl import read_jsonl, write_jsonl
from distill.manifest import MANIFEST, finish, stale_reason
from distill.recipe import DataSource, Recipe

STEPS = ("notes", "label", "aggregate", "self_train", "train", "train_human", "compress", "export", "bench", "report")
console = Console(stderr=True, soft_wrap=True)


def safe_name(spec: str) -> str:
    """A teacher spec as a file name (``ontology:open`` -> ``ontology_open``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec)


@dataclass
class StepOutcome:
    name: str
    ran: bool
    reason: str
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


def _text_only(docs: list[Document]) -> list[Document]:
    """What a student may see when it re-labels notes: text and meta, never a layer."""
    return [Document(d.id, d.text, d.meta) for d in docs]


class StepFailed(RuntimeError):
    """A step stopped on a user-facing problem (bad data, a leak, teacher failures); the message
    names the step, and rerunning the recipe resumes from it."""


class Run:
    """One execution of a recipe; each ``step_*`` method reads files and writes files."""

    def __init__(self, recipe: Recipe, force_from: str | None = None, progress: bool = True):
        if force_from is not None and force_from not in STEPS:
            raise ValueError(f"--from must be one of {', '.join(STEPS)}, got {force_from!r}")
        self.recipe = recipe
        self.out = recipe.out
        self.forced = set(STEPS[STEPS.index(force_from):]) if force_from else set()
        self.progress = progress
        self.outcomes: list[StepOutcome] = []

    # -- paths -------------------------------------------------------------------------------
    def dir(self, step: str) -> Path:
        return self.out / step

    @property
    def notes_path(self) -> Path:
        return self.dir("notes") / "notes.jsonl"

    def gold_path(self, key: str) -> Path:
        return self.dir("notes") / f"{key}.gold.jsonl"

    def teacher_out(self, spec: str, part: str = "notes") -> Path:
        return self.dir("label") / f"{safe_name(spec)}.{part}.jsonl"

    @property
    def silver_path(self) -> Path:
        return self.dir("aggregate") / "silver.jsonl"

    @property
    def train_silver_path(self) -> Path:
        """What the final student trains on: the self-trained silver layer when there are rounds."""
        return self.dir("self_train") / "silver.jsonl" if self.recipe.self_training.rounds else self.silver_path

    @property
    def student_dir(self) -> Path:
        """The final distilled student: a model directory (``distill predict --model``)."""
        return self.dir("train")

    @property
    def human_dir(self) -> Path:
        return self.dir("train_human")

    @property
    def compress_dir(self) -> Path:
        return self.dir("compress")

    def export_dir(self, model: Path) -> Path:
        return self.dir("export") / model.name

    @property
    def test_keys(self) -> list[str]:
        return [f"test{i}" for i in range(len(self.recipe.data.test))]

    # -- orchestration -------------------------------------------------------------------------
    def step(self, name: str, config: str, inputs: list[Path], fn: Callable[[], tuple[list[Path], dict[str, Any]]]) -> None:
        folder = self.dir(name)
        reason = "forced with --from" if name in self.forced else stale_reason(folder, config, inputs)
        if reason is None:
            console.print(f"[green]✓[/] {name}: up to date (manifest matches), skipped")
            self.outcomes.append(StepOutcome(name, False, "up to date", 0.0))
            return
        console.print(f"[bold]▶ {name}[/]: running ({reason})")
        started = time.time()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)  # a step killed from here on never looks finished
        try:
            outputs, summary = fn()
        except (ValueError, RuntimeError, OSError) as e:  # programming errors (TypeError, ...) keep their traceback
            raise StepFailed(f"step {name!r} failed: {e}") from e
        m = finish(folder, name, config, inputs, outputs, started, summary)
        self.outcomes.append(StepOutcome(name, True, reason, m.seconds, summary))

    def run(self) -> list[StepOutcome]:
        r = self.recipe
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "recipe.json").write_text(json.dumps(r.model_dump(mode="json"), indent=2))
        self.step("notes", r.section_hash("data", "labels"), self._source_files(), self.step_notes)
        parts = self._label_parts()
        self.step("label", r.section_hash("teachers", "labels"), [src for _, src in parts], self.step_label)
        teacher_files = [self.teacher_out(t.spec, part) for t in r.teachers for part, _ in parts]
        self.step("aggregate", r.section_hash("aggregate", "labels"), teacher_files, self.step_aggregate)
        dev = [self.gold_path("dev")] if r.data.dev else []
        if r.self_training.rounds:
            self.step("self_train", r.section_hash("self_training", "student", "labels", "seed"), [self.silver_path, *dev],
                      self.step_self_train)
        self.step("train", r.section_hash("student", "labels", "seed"), [self.train_silver_path, *dev], self.step_train)
        if r.student.human_baseline and r.data.human_train:
            self.step("train_human", r.section_hash("student", "labels", "seed"),
                      [self.gold_path("human_train"), *dev], self.step_train_human)
        if r.compress.layers:
            self.step("compress", r.section_hash("compress", "student", "labels", "seed"),
                      [self.student_dir, self.train_silver_path, *dev], self.step_compress)
        if r.export.enabled:
            self.step("export", r.section_hash("export"), self._model_dirs(), self.step_export)
        if r.bench.enabled and r.data.test:
            tests = [self.gold_path(k) for k in self.test_keys]
            self.step("bench", r.section_hash("bench", "teachers", "export"), [*tests, *self._model_dirs(), *self._export_dirs()],
                      self.step_bench)
            self.step("report", r.section_hash("report", "bench"), [self.dir("bench") / "results.json"], self.step_report)
        self.print_summary()
        return self.outcomes

    def _label_parts(self) -> list[tuple[str, Path]]:
        """What the teachers label: the notes, plus the gold dev texts when a weighted vote needs
        each teacher's precision/recall there."""
        r = self.recipe
        parts = [("notes", self.notes_path)]
        if r.data.dev and r.aggregate.method == "weighted":
            parts.append(("dev", self.gold_path("dev")))
        return parts

    def _model_dirs(self) -> list[Path]:
        dirs = [self.student_dir]
        if self.recipe.student.human_baseline and self.recipe.data.human_train:
            dirs.append(self.human_dir)
        if self.recipe.compress.layers:
            dirs.append(self.compress_dir)
        return dirs

    def _export_dirs(self) -> list[Path]:
        return [self.export_dir(d) for d in self._model_dirs()] if self.recipe.export.enabled else []

    # -- steps -------------------------------------------------------------------------------
    def _source_files(self) -> list[Path]:
        """The corpus files behind every data source: an edited or replaced corpus re-runs the
        notes step (and so everything after it), as a changed recipe does."""
        from distill.corpora import REGISTRY, resolve_data_dir

        d = self.recipe.data
        files: set[Path] = set()
        for src in [*d.notes, *d.test, *(s for s in (d.dev, d.human_train) if s)]:
            if src.corpus in REGISTRY:
                root = resolve_data_dir(self.recipe.data_dir)
                files.update(root / f for fs in REGISTRY[src.corpus].files.values() for f in fs if (root / f).exists())
            else:
                files.add(self.recipe.path(src.corpus))  # type: ignore[arg-type]
        return sorted(files)

    def _load(self, src: DataSource) -> list[Document]:
        from distill.corpora import REGISTRY, load_corpus

        name = src.corpus if src.corpus in REGISTRY else str(self.recipe.path(src.corpus))
        docs = load_corpus(name, self.recipe.data_dir, src.split)
        return docs[: src.limit] if src.limit else docs

    def step_notes(self) -> tuple[list[Path], dict[str, Any]]:
        """Materialise every data source as a file, so later steps hash what they read."""
        r = self.recipe
        notes: dict[str, Document] = {}
        for src in r.data.notes:
            for d in self._load(src):
                if d.id in notes:
                    raise ValueError(f"data.notes: document id {d.id!r} appears in two sources")
                notes[d.id] = Document(d.id, d.text, dict(d.meta))  # teachers never see gold
        outputs = [self.notes_path]
        write_jsonl(notes.values(), self.notes_path)
        summary: dict[str, Any] = {"notes": len(notes)}
        gold_sets = {"dev": r.data.dev, "human_train": r.data.human_train}
        gold_sets.update({k: s for k, s in zip(self.test_keys, r.data.test)})
        test_ids: set[str] = set()
        used: dict[str, set[str]] = {"data.notes": set(notes)}  # what a student trains or is selected on
        for key, src in gold_sets.items():
            if src is None:
                continue
            docs = self._load(src)
            ids = {d.id for d in docs}
            if key.startswith("test"):
                test_ids |= ids
            else:
                used[f"data.{key}"] = ids
            write_jsonl(docs, self.gold_path(key), layers=[GOLD])
            outputs.append(self.gold_path(key))
            summary[key] = len(docs)
        for where, ids in used.items():
            leaked = test_ids & ids
            if leaked:
                raise ValueError(f"{len(leaked)} test documents are also in {where} (e.g. {sorted(leaked)[:3]}): "
                                 "the benchmark would score the student on documents it trained or was selected on")
        return outputs, summary

    def step_label(self) -> tuple[list[Path], dict[str, Any]]:
        from teachers.base import label_corpus
        from teachers.registry import make_teacher

        r = self.recipe
        outputs, summary = [], {}
        # teachers see text only, never the gold layer of the dev file
        parts = [(part, [Document(d.id, d.text, d.meta) for d in read_jsonl(src)]) for part, src in self._label_parts()]
        for t in r.teachers:
            teacher = make_teacher(t.spec, allow_external=r.allow_external_api, **r.teacher_options(t))
            for part, docs in parts:
                res = label_corpus(teacher, docs, self.teacher_out(t.spec, part), progress=self.progress)
                if res.failed:
                    raise RuntimeError(f"teacher {t.spec} failed on {len(res.failed)} documents of {part} "
                                       f"(see {self.teacher_out(t.spec, part)}.failures.jsonl); rerun to retry them")
                outputs.append(self.teacher_out(t.spec, part))
                summary[f"{t.spec}:{part}"] = {"labelled": res.labelled, "resumed": res.skipped_done, "spans": res.spans,
                                               "usage": res.usage.to_dict()}
        return outputs, summary

    def step_aggregate(self) -> tuple[list[Path], dict[str, Any]]:
        from distill.aggregate import aggregate, estimate_weights, soft_targets_path
        from teachers.base import load_layers

        r = self.recipe
        layers = r.aggregate.layers or [t.spec for t in r.teachers]
        docs = load_layers([self.teacher_out(s) for s in layers])
        weights = None
        if r.aggregate.method == "weighted":
            if not r.data.dev:
                raise ValueError("aggregate.method = 'weighted' needs data.dev (gold) to estimate teacher weights")
            gold = {d.id: d for d in read_jsonl(self.gold_path("dev"))}
            dev = load_layers([self.teacher_out(s, "dev") for s in layers])
            dev = [d.with_layers(gold=gold[d.id].spans(GOLD)) for d in dev]
            weights = estimate_weights(dev, layers, r.labels)
        res = aggregate(docs, layers, r.aggregate.method, r.labels, weights=weights, **r.aggregate.options)
        write_jsonl(res.docs, self.silver_path)
        soft = res.soft.save(soft_targets_path(self.silver_path))
        for line in res.log.lines():
            console.print(f"  {line}")
        return [self.silver_path, soft], {"documents": len(res.docs), "log": res.log.lines()}

    def _config(self, soft: bool, **extra: Any) -> Any:
        from students.train import TrainConfig

        r = self.recipe
        opts = {**r.student.options, **extra}
        if soft:
            opts.setdefault("loss", "kd")
        return TrainConfig(base_model=r.student.base_model, labels=tuple(r.labels), seed=r.seed, **opts)

    def _dev(self) -> list[Document] | None:
        return list(read_jsonl(self.gold_path("dev"))) if self.recipe.data.dev else None

    def _train(self, train_path: Path, layer: str, out: Path, soft: bool) -> tuple[list[Path], dict[str, Any]]:
        from distill.aggregate import SoftTargets, soft_targets_path
        from students.train import train_student

        r = self.recipe
        docs = list(read_jsonl(train_path))
        targets = SoftTargets.load(soft_targets_path(train_path)) if soft else None
        res = train_student(docs, out, self._config(soft), dev_docs=self._dev(), layer=layer, soft=targets,
                            progress=self.progress, data={"train": str(train_path), "layer": layer, "recipe": r.name})
        return [out], {k: res.card[k] for k in ("scores", "wall_seconds") if k in res.card}

    def step_self_train(self) -> tuple[list[Path], dict[str, Any]]:
        """Rounds of: train a student on the silver layer, let it re-label the notes, add its
        confident spans where the silver layer is silent (``students.self_train``). Each round's
        model and silver file stay in the step folder, and a killed run resumes the round's training."""
        from students.predict import TorchPredictor
        from students.self_train import add_confident_spans, pick_threshold
        from students.train import train_student

        r = self.recipe
        folder = self.dir("self_train")
        silver = list(read_jsonl(self.silver_path))
        dev = self._dev()
        rounds = []
        for k in range(1, r.self_training.rounds + 1):
            model_dir = folder / f"round{k}"
            console.print(f"  self-training round {k}/{r.self_training.rounds}: training on {len(silver)} notes")
            res = train_student(silver, model_dir, self._config(False), dev_docs=dev, layer=SILVER, progress=self.progress,
                                data={"train": f"self-training round {k}", "layer": SILVER, "recipe": r.name})
            pred = TorchPredictor.from_dir(model_dir)
            threshold, by_t = r.self_training.threshold, {}
            if threshold is None:
                threshold, by_t = pick_threshold(dev or [], pred.predict(_text_only(dev or [])), r.labels)
            silver, merge = add_confident_spans(silver, pred.predict(_text_only(silver)), threshold)
            path = folder / f"silver_round{k}.jsonl"
            write_jsonl(silver, path)
            rounds.append({"round": k, "dev_relaxed_f1": res.card["scores"].get("dev", {}).get("relaxed_f1"),
                           "dev_f05_by_threshold": by_t, **merge.to_dict()})
            console.print(f"  round {k}: threshold {threshold}, added {merge.to_dict()['added_total']} student spans")
        write_jsonl(silver, self.train_silver_path)
        return [self.train_silver_path], {"rounds": rounds}

    def step_train(self) -> tuple[list[Path], dict[str, Any]]:
        return self._train(self.train_silver_path, SILVER, self.student_dir, self.recipe.student.targets == "soft")

    def step_compress(self) -> tuple[list[Path], dict[str, Any]]:
        """A shallower student from the distilled one's soft logits on the same notes (``students.compress``)."""
        from students.compress import compress_student

        r = self.recipe
        cfg = self._config(False, **r.compress.options)
        res = compress_student(self.student_dir, list(read_jsonl(self.train_silver_path)), self.compress_dir,
                               r.compress.layers, cfg, dev_docs=self._dev(), layer=SILVER, progress=self.progress)
        return [self.compress_dir], {k: res.card[k] for k in ("scores", "wall_seconds") if k in res.card}

    def step_train_human(self) -> tuple[list[Path], dict[str, Any]]:
        return self._train(self.gold_path("human_train"), GOLD, self.human_dir, False)

    def step_export(self) -> tuple[list[Path], dict[str, Any]]:
        from students.export import export_student

        outputs, summary = [], {}
        for model in self._model_dirs():
            target = self.export_dir(model)
            rep = export_student(model, target, int8=self.recipe.export.int8)
            outputs.append(target)
            summary[model.name] = rep.to_dict()
        return outputs, summary

    def step_bench(self) -> tuple[list[Path], dict[str, Any]]:
        from distill.bench import BenchConfig, Combination, run_bench, student_systems, teacher_system
        from distill.cost import Prices

        r = self.recipe
        systems = [teacher_system(t.spec, allow_external=r.allow_external_api, **r.teacher_options(t)) for t in r.teachers]
        # bench-only teachers (an LLM on a CPU budget): one pass on their first notes, kept in a record
        # beside results.json, so a rerun of this step on the same notes costs no LLM time
        systems += [teacher_system(t.spec, allow_external=r.allow_external_api, max_notes=t.max_notes,
                                   priced_as=t.priced_as, record=self.dir("bench") / "measured" / f"{safe_name(t.spec)}.json",
                                   **r.teacher_options(t)) for t in r.bench.teachers]
        combined = [Combination(c.row_name, tuple(c.layers), c.method, dict(c.options)) for c in r.bench.combined]
        variants = ("torch", "onnx-fp32", "onnx-int8") if r.bench.torch else ("onnx-fp32", "onnx-int8")
        names = {self.student_dir: "student (distilled)", self.human_dir: "student (human labels)",
                 self.compress_dir: f"student (distilled, {r.compress.layers} layers)"}
        for model in self._model_dirs():
            systems += student_systems(model, self.export_dir(model), name=names[model], variants=variants)
        gold_sets = {}
        for key, src in zip(self.test_keys, r.data.test):
            name = f"{src.corpus}:{src.split or 'all'}"
            if name in gold_sets:  # two test sets must not overwrite each other's scores
                name = f"{name} ({key})"
            gold_sets[name] = list(read_jsonl(self.gold_path(key)))
        first = next(iter(gold_sets.values()))
        docs = [Document(d.id, d.text, d.meta) for d in first][: r.bench.max_docs]
        prices = Prices.from_options(r.bench.cpu_price, r.bench.gpu_price, r.bench.batch_api)
        cfg = BenchConfig(labels=tuple(r.labels), progress=self.progress, prices=prices, **r.bench.options)
        results = run_bench(systems, docs, gold_sets, cfg, combined)
        results["recipe"] = {"name": r.name, "teachers": [t.spec for t in r.teachers], "aggregate": r.aggregate.method,
                             "targets": r.student.targets, "base_model": r.student.base_model,
                             "labelling": self._labelling_usage()}
        path = self.dir("bench") / "results.json"
        path.write_text(json.dumps(results, indent=2, default=str))
        return [path], {"systems": [row.get("name") for row in results.get("systems", [])]}

    def _labelling_usage(self) -> dict[str, Any]:
        """What each teacher cost to label the training notes (from the label step's ledgers)."""
        from teachers.base import read_usage

        return {t.spec: read_usage(self.teacher_out(t.spec)).to_dict() for t in self.recipe.teachers}

    def step_report(self) -> tuple[list[Path], dict[str, Any]]:
        from distill.report import write_report

        paths = write_report(self.dir("bench") / "results.json", self.dir("report"), reference=self.recipe.bench.reference,
                             title=self.recipe.report.title or self.recipe.name)
        return list(paths.values()), {"files": {k: str(v) for k, v in paths.items()}}

    # -- summary -------------------------------------------------------------------------------
    def print_summary(self) -> None:
        table = Table(title=f"distill run {self.recipe.name} → {self.out}")
        for col in ("step", "status", "seconds"):
            table.add_column(col)
        for o in self.outcomes:
            table.add_row(o.name, "ran (" + o.reason + ")" if o.ran else "skipped (up to date)", f"{o.seconds:.1f}")
        Console().print(table)
