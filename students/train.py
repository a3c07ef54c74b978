"""Train a BERT-style token classifier on silver (or gold) spans with the HF ``Trainer``.

Loss: cross-entropy on hard BIO tags (``loss="ce"``), or knowledge distillation (``loss="kd"``):
KL divergence from the aggregated soft targets (``distill.aggregate``) to the student, both
softened with a temperature T (targets as ``q^(1/T)``, renormalised; the student as
``softmax(z/T)``), scaled by T^2, and mixed with hard CE as ``kd_alpha * KD + (1 - kd_alpha) * CE``.
With one-hot targets and T = 1 the KD term *is* the CE, which the tests check.

CPU-friendly by default: windows of ``max_length`` tokens padded per batch (dynamic padding),
batches grouped by length, gradient accumulation, an optional ``max_steps`` cap, one evaluation per
epoch (or every ``eval_steps``) on the gold dev set (relaxed span F1, the metric early stopping
watches), fixed seeds, and the new head at ``head_lr_multiplier`` x the learning rate (see
``create_optimizer``). Checkpoints go to ``<out>/checkpoints`` at each evaluation (each epoch, or
every ``eval_steps`` for long epochs); running the same command again resumes from the latest one.
An optional second stage fine-tunes on a small gold set (``<out>/checkpoints-gold``).

The output directory is a standard HF model dir (config with id2label/label2id, weights,
tokenizer.json) plus ``labels.json`` and ``training_card.json`` / ``training_card.md``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from distill.documents import DEFAULT_LABELS, GOLD, Document
from students import tagging
from students.base_models import MINILM_SHA256, minilm_dir, resolve_base_model

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
CHECKPOINTS_GOLD = "checkpoints-gold"
RUN_CONFIG = "run_config.json"
CARD_JSON = "training_card.json"
CARD_MD = "training_card.md"
LOSSES = ("ce", "kd")
HEAD_MODULES = ("classifier",)  # the token-classification head of BERT, RoBERTa, MPNet, DeBERTa


class TrainingDataError(ValueError):
    """Training data the student cannot learn from (empty, unknown labels, missing soft targets)."""


@dataclass
class TrainConfig:
    """Hyper-parameters; everything that changes the result is recorded in the training card."""

    base_model: str = "minilm"
    labels: tuple[str, ...] = DEFAULT_LABELS
    max_length: int = 128
    stride: int = 16
    epochs: float = 3.0
    max_steps: int = -1
    batch_size: int = 16
    grad_accum: int = 1
    learning_rate: float = 2e-4
    head_lr_multiplier: float = 50.0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    loss: str = "ce"
    temperature: float = 1.0
    kd_alpha: float = 1.0
    layers: int = 0  # keep this many transformer layers of the base model (0: all), spread from first to last
    o_weight: float = 1.0  # weight of the CE on tokens the silver layer leaves O (partial-label training)
    patience: int = 3
    eval_steps: int = 0  # 0: evaluate and checkpoint once per epoch; N: every N optimizer steps
    seed: int = 42
    gold_epochs: float = 0.0
    gold_learning_rate: float = 5e-5
    eval_batch_size: int = 32

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise ValueError("kd_alpha must be in [0, 1]")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        if self.layers < 0:
            raise ValueError("layers must be 0 (all) or a positive number of transformer layers to keep")
        if not 0.0 < self.o_weight <= 1.0:
            raise ValueError("o_weight must be in (0, 1]")
        tagging.bio_tags(self.labels)


# --- losses ------------------------------------------------------------------------------------


def hard_ce(logits: Any, labels: Any, o_weight: float = 1.0) -> Any:
    """Token cross-entropy; positions labelled -100 are ignored. ``o_weight`` < 1 down-weights
    positions tagged O (id 0): a dictionary's silence is weak evidence that a word is no entity,
    so the student is not pushed as hard towards the teacher's misses (a weighted mean)."""
    import torch.nn.functional as F

    flat = labels.reshape(-1)
    if o_weight == 1.0:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat, ignore_index=tagging.IGNORE_INDEX)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), flat, ignore_index=tagging.IGNORE_INDEX,
                         reduction="none")
    w = (flat != tagging.IGNORE_INDEX).float()
    w = w * ((flat == 0).float() * (o_weight - 1.0) + 1.0)
    return (ce * w).sum() / w.sum().clamp_min(1e-6)


def kd_loss(logits: Any, targets: Any, temperature: float = 1.0) -> Any:
    """Mean over labelled positions of T^2 * KL(q_T || softmax(z/T)); rows of zeros are ignored."""
    import torch

    mask = targets.sum(-1) > 0
    if not bool(mask.any()):
        return logits.sum() * 0.0
    q = targets[mask].float().clamp_min(0.0)
    if temperature != 1.0:
        q = q.pow(1.0 / temperature)
    q = q / q.sum(-1, keepdim=True)
    logp = torch.log_softmax(logits[mask].float() / temperature, dim=-1)
    kl = (torch.xlogy(q, q) - q * logp).sum(-1)
    return kl.mean() * temperature**2


def keep_layers(model: Any, n: int) -> list[int]:
    """Cut a BERT-style encoder to ``n`` of its layers, spread evenly from the first to the last
    (the last one feeds the head, so a fine-tuned model keeps its top), and record it in the config
    so the saved model reloads with ``from_pretrained``. Returns the kept layer indices."""
    import torch

    encoder = getattr(getattr(model, "base_model", None), "encoder", None)
    blocks = getattr(encoder, "layer", None)
    if not isinstance(blocks, torch.nn.ModuleList):
        raise TrainingDataError(f"{type(model).__name__}: cannot find encoder.layer to cut to {n} layers")
    total = len(blocks)
    if n > total:
        raise TrainingDataError(f"layers={n} but the base model has only {total}")
    keep = sorted({int(round(x)) for x in np.linspace(0, total - 1, n)})
    encoder.layer = torch.nn.ModuleList(blocks[i] for i in keep)
    model.config.num_hidden_layers = len(keep)
    return keep


# --- features ----------------------------------------------------------------------------------


@dataclass
class FeatureStats:
    documents: int = 0
    empty_documents: int = 0
    windows: int = 0
    tokens: int = 0
    spans: Counter = field(default_factory=Counter)
    overlaps_resolved: int = 0
    misaligned: int = 0
    misaligned_examples: list[str] = field(default_factory=list)
    untaggable: int = 0  # spans covering no word (only whitespace / special bytes): not trained on

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["spans"] = dict(self.spans)
        return d


def pick_layer(docs: Sequence[Document], layer: str | None) -> str:
    """``layer`` if given, else ``silver`` when every document has it, else ``gold``."""
    if layer:
        missing = [d.id for d in docs if layer not in d.layers]
        if missing:
            raise TrainingDataError(f"{len(missing)} training documents lack the layer {layer!r} (e.g. {missing[:3]})")
        return layer
    for name in ("silver", GOLD):
        if docs and all(name in d.layers for d in docs):
            return name
    have = sorted({n for d in docs for n in d.layers})
    raise TrainingDataError(f"say which layer to train on (--layer); the documents have {have}")


def build_features(docs: Sequence[Document], tokenizer: Any, labels: Sequence[str], layer: str, max_length: int,
                   stride: int, soft: Any = None) -> tuple[list[dict[str, Any]], FeatureStats]:
    """Windows with BIO labels (and soft targets when ``soft`` is a ``SoftTargets``)."""
    tags = tagging.bio_tags(labels)
    if soft is not None and list(soft.tags) != tags:
        raise TrainingDataError(f"soft targets were made for tags {soft.tags}, the student uses {tags}")
    tok = tagging.prepare_tokenizer(tokenizer)
    feats: list[dict[str, Any]] = []
    st = FeatureStats()
    unknown: Counter = Counter()
    for doc in docs:
        spans = doc.spans(layer)
        for s in spans:
            if s.label not in labels:
                unknown[s.label] += 1
        if unknown:
            continue
        st.documents += 1
        if not doc.text.strip():
            st.empty_documents += 1
            continue
        kept, dropped = tagging.resolve_overlaps(spans)
        st.overlaps_resolved += len(dropped)
        enc = tagging.encode_text(tok, doc.text, max_length, stride)
        word_tags, misaligned = tagging.spans_to_word_tags(enc, kept, tags)
        untaggable = {id(s) for s in misaligned if not len(tagging.word_hits(enc, s))}
        st.untaggable += len(untaggable)
        st.misaligned += len(misaligned) - len(untaggable)
        for s in misaligned[: max(0, 5 - len(st.misaligned_examples))]:
            st.misaligned_examples.append(f"{doc.id}:{s.start}-{s.end} {s.label} {s.text!r}")
        st.spans.update(s.label for s in kept if id(s) not in untaggable)
        label_ids = tagging.window_label_ids(enc, word_tags)
        soft_ids = None
        if soft is not None:
            if doc.id not in soft.docs:
                raise TrainingDataError(f"document {doc.id!r} has no soft targets in the soft-target file")
            offs, probs = soft.docs[doc.id]
            soft_ids = tagging.window_soft_targets(enc, tagging.align_word_targets(enc, offs, probs, tags))
        for k, w in enumerate(enc.windows):
            f: dict[str, Any] = {"input_ids": w.input_ids, "labels": label_ids[k]}
            if soft_ids is not None:
                f["soft_targets"] = soft_ids[k]
            feats.append(f)
            st.tokens += len(w.input_ids)
        st.windows += len(enc.windows)
    if unknown:
        raise TrainingDataError(
            f"layer {layer!r} has labels outside the label set {list(labels)}: {dict(unknown)} "
            f"(pass --labels to train on them, or map them first)"
        )
    if not feats:
        raise TrainingDataError(f"no training data: {len(docs)} documents, none with text in layer {layer!r}")
    if not sum(st.spans.values()):
        raise TrainingDataError(f"no training data: layer {layer!r} has no spans in {len(docs)} documents")
    if st.overlaps_resolved:
        log.warning("train: %d overlapping spans dropped (longest kept)", st.overlaps_resolved)
    if st.misaligned:
        log.warning("train: %d spans not on token-word boundaries were widened to whole words, e.g. %s",
                    st.misaligned, st.misaligned_examples[:2])
    if st.untaggable:
        log.warning("train: %d spans cover no word (only whitespace or special characters) and were left out",
                    st.untaggable)
    return feats, st


class Collator:
    """Dynamic padding for windows (+ -100 labels, zero soft-target rows)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, feats: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in feats)
        n = len(feats)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), tagging.IGNORE_INDEX, dtype=torch.long)
        soft = None
        if "soft_targets" in feats[0]:
            soft = torch.zeros((n, width, feats[0]["soft_targets"].shape[1]), dtype=torch.float32)
        for i, f in enumerate(feats):
            L = len(f["input_ids"])
            ids[i, :L] = torch.as_tensor(f["input_ids"])
            mask[i, :L] = 1
            labels[i, :L] = torch.as_tensor(f["labels"])
            if soft is not None:
                soft[i, :L] = torch.from_numpy(f["soft_targets"])
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if soft is not None:
            batch["soft_targets"] = soft
        return batch


# --- trainer -----------------------------------------------------------------------------------


def _trainer_class() -> type:
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """Trainer with the CE/KD loss and span-level evaluation on gold dev documents."""

        loss_is_scaled_for_ga = False  # our loss is a per-batch mean: let Trainer divide by GA steps

        def __init__(self, *a: Any, loss: str = "ce", temperature: float = 1.0, kd_alpha: float = 1.0,
                     span_eval: Any = None, head_lr_multiplier: float = 1.0, o_weight: float = 1.0, **kw: Any):
            super().__init__(*a, **kw)
            self.loss_kind, self.temperature, self.kd_alpha, self.span_eval = loss, temperature, kd_alpha, span_eval
            self.head_lr_multiplier = head_lr_multiplier
            self.o_weight = o_weight

        def create_optimizer(self, model: Any = None) -> Any:
            """The Trainer's AdamW, with the randomly initialised head in its own group at
            ``head_lr_multiplier`` x the learning rate: on a CPU budget of a few hundred steps
            the head otherwise lags the pretrained body and the student sits at "all O"."""
            opt = super().create_optimizer(model)
            if self.head_lr_multiplier == 1.0 or getattr(self, "_head_group_done", False):
                return opt
            named = (model if model is not None else self.model).named_parameters()
            head_ids = {id(p) for n, p in named if n.split(".")[0] in HEAD_MODULES}
            extra = []
            for g in opt.param_groups:
                head = [p for p in g["params"] if id(p) in head_ids]
                if head:
                    g["params"] = [p for p in g["params"] if id(p) not in head_ids]
                    extra.append({**{k: v for k, v in g.items() if k != "params"}, "params": head,
                                  "lr": g["lr"] * self.head_lr_multiplier})
            for g in extra:
                opt.add_param_group(g)
            self._head_group_done = True
            return opt

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            labels = inputs.pop("labels")
            soft = inputs.pop("soft_targets", None)
            out = model(**inputs)
            if self.loss_kind == "kd":
                if soft is None:
                    raise TrainingDataError("loss 'kd' needs soft targets")
                loss = kd_loss(out.logits, soft, self.temperature)
                if self.kd_alpha < 1.0:
                    loss = self.kd_alpha * loss + (1.0 - self.kd_alpha) * hard_ce(out.logits, labels, self.o_weight)
            else:
                loss = hard_ce(out.logits, labels, self.o_weight)
            return (loss, out) if return_outputs else loss

        def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict[str, float]:
            scores = self.span_eval(self.model)
            metrics = {f"{metric_key_prefix}_{k}": v for k, v in scores.items()}
            metrics["epoch"] = self.state.epoch or 0.0
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return DistillTrainer


def span_scores(model: Any, tokenizer: Any, docs: Sequence[Document], labels: Sequence[str], max_length: int,
                stride: int, pad_id: int, batch_size: int = 32) -> dict[str, Any]:
    """Relaxed and exact micro P/R/F1 (and per-label relaxed F1) of the model on gold ``docs``."""
    from distill.metrics import score
    from students.predict import TorchPredictor

    pred = TorchPredictor(model, tokenizer, tagging.bio_tags(labels), max_length, stride, pad_id, batch_size).predict(docs, "pred")
    out: dict[str, Any] = {}
    for match in ("relaxed", "exact"):
        rep = score(docs, pred, gold_layer=GOLD, pred_layer="pred", labels=labels, match=match, bootstrap=0)
        out[f"{match}_f1"] = round(rep.micro.f1, 4)
        out[f"{match}_precision"] = round(rep.micro.precision, 4)
        out[f"{match}_recall"] = round(rep.micro.recall, 4)
        if match == "relaxed":
            for lab, s in rep.labels.items():
                out[f"relaxed_f1_{lab}"] = round(s.f1, 4)
    return out


def _training_args(out: Path, cfg: TrainConfig, lr: float, epochs: float, has_dev: bool, progress: bool,
                   max_steps: int | None = None) -> Any:
    """``max_steps`` overrides ``cfg.max_steps`` (None: use it)."""
    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    kw: dict[str, Any] = dict(
        output_dir=str(out),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=lr,
        weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio,
        num_train_epochs=epochs,
        max_steps=cfg.max_steps if max_steps is None else max_steps,
        lr_scheduler_type="linear",
        logging_steps=10,
        save_strategy="steps" if cfg.eval_steps else "epoch",
        save_steps=cfg.eval_steps or 500,
        save_total_limit=2,
        eval_strategy=("steps" if cfg.eval_steps else "epoch") if has_dev else "no",
        eval_steps=cfg.eval_steps or None,
        load_best_model_at_end=has_dev,
        metric_for_best_model="relaxed_f1" if has_dev else None,
        greater_is_better=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=not progress,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        save_only_model=False,
    )
    if "train_sampling_strategy" in fields:  # transformers >= 5
        kw["train_sampling_strategy"] = "group_by_length"
    else:
        kw["group_by_length"] = True
    if "warmup_ratio" not in fields:
        kw.pop("warmup_ratio")
        kw["warmup_steps"] = cfg.warmup_ratio
    return TrainingArguments(**{k: v for k, v in kw.items() if k in fields})


def _run_stage(model: Any, tokenizer: Any, feats: list[dict[str, Any]], ckpt_dir: Path, cfg: TrainConfig, lr: float,
               epochs: float, loss: str, dev_docs: Sequence[Document] | None, pad_id: int, progress: bool,
               extra_callbacks: Sequence[Any] = (), max_steps: int | None = None, o_weight: float = 1.0) -> dict[str, Any]:
    """One Trainer run; resumes from the newest checkpoint in ``ckpt_dir`` when there is one.
    ``max_steps`` overrides ``cfg.max_steps`` (the gold stage runs its own ``gold_epochs``);
    ``o_weight`` is the silver stage's (gold O tags are real evidence, so the gold stage keeps 1)."""
    from transformers import EarlyStoppingCallback
    from transformers.trainer_utils import get_last_checkpoint

    args = _training_args(ckpt_dir, cfg, lr, epochs, bool(dev_docs), progress, max_steps)
    callbacks = list(extra_callbacks)
    if dev_docs:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.patience))

    def span_eval(m: Any) -> dict[str, Any]:
        return span_scores(m, tokenizer, dev_docs or [], cfg.labels, cfg.max_length, cfg.stride, pad_id, cfg.eval_batch_size)

    trainer = _trainer_class()(
        model=model, args=args, train_dataset=feats, eval_dataset=feats[:1] if dev_docs else None,
        data_collator=Collator(pad_id), callbacks=callbacks,
        loss=loss, temperature=cfg.temperature, kd_alpha=cfg.kd_alpha, span_eval=span_eval,
        head_lr_multiplier=cfg.head_lr_multiplier, o_weight=o_weight,
    )
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last:
        log.info("train: resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    history = [h for h in trainer.state.log_history if "eval_relaxed_f1" in h]
    return {
        "global_step": result.global_step,
        "train_loss": round(float(result.training_loss), 4),
        "resumed_from": Path(last).name if last else None,
        "best_checkpoint": Path(trainer.state.best_model_checkpoint).name if trainer.state.best_model_checkpoint else None,
        "best_dev_relaxed_f1": trainer.state.best_metric,
        "dev_history": [{"epoch": round(h.get("epoch", 0), 2), "relaxed_f1": h["eval_relaxed_f1"],
                         "exact_f1": h.get("eval_exact_f1")} for h in history],
        "loss_history": [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h],
        "model": trainer.model,
    }


def _docs_fingerprint(docs: Sequence[Document], layer: str) -> str:
    """SHA-256 over each document's id, text and ``layer`` spans: relabelled or edited notes with
    the same ids must not resume checkpoints trained on the old labels."""
    h = hashlib.sha256()
    for d in sorted(docs, key=lambda x: x.id):
        spans = sorted((s.start, s.end, s.label) for s in d.layers.get(layer, []))
        h.update(json.dumps([d.id, hashlib.sha256(d.text.encode()).hexdigest(), spans]).encode())
    return h.hexdigest()


def _soft_fingerprint(soft: Any) -> str | None:
    """SHA-256 of the soft targets (word offsets and distributions per document), or None."""
    if soft is None:
        return None
    h = hashlib.sha256(json.dumps(list(soft.tags)).encode())
    for doc_id in sorted(soft.docs):
        offs, probs = soft.docs[doc_id]
        h.update(doc_id.encode())
        h.update(np.ascontiguousarray(offs).tobytes())
        h.update(np.ascontiguousarray(probs, dtype=np.float32).tobytes())
    return h.hexdigest()


def _check_run_config(ckpt_dir: Path, record: dict[str, Any]) -> None:
    """Refuse to resume checkpoints made with different settings or data (a silent mix-up)."""
    path = ckpt_dir / RUN_CONFIG
    if path.is_file():
        old = json.loads(path.read_text())
        if old != record:
            diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise TrainingDataError(
                f"{ckpt_dir} holds checkpoints of a run with different {diff}; use another --out or delete that folder"
            )
    else:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, sort_keys=True))


@dataclass
class TrainResult:
    out_dir: Path
    card: dict[str, Any]


def train_student(
    train_docs: Sequence[Document],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    dev_docs: Sequence[Document] | None = None,
    layer: str | None = None,
    soft: Any = None,
    gold_docs: Sequence[Document] | None = None,
    test_docs: Sequence[Document] | None = None,
    data: Mapping[str, Any] | None = None,
    progress: bool = True,
    keep_checkpoints: bool = False,
    model_factory: Any = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train, evaluate, and write the model directory; returns its path and training card.

    ``soft``: a ``distill.aggregate.SoftTargets`` (required for ``loss="kd"``). ``gold_docs``: the
    optional second stage. ``test_docs``: held-back gold scored once at the end (card only, never
    used for model selection). ``data``: free-form description for the card (paths, split,
    teachers). ``model_factory(num_labels, id2label, label2id) -> (model, tokenizer)`` replaces
    ``from_pretrained`` (tests build tiny random models this way). ``callbacks``: extra
    ``TrainerCallback``s for both stages.
    """
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, set_seed

    cfg = config or TrainConfig()
    cfg.check()
    if not train_docs:
        raise TrainingDataError("no training documents")
    if cfg.loss == "kd" and soft is None:
        raise TrainingDataError("loss 'kd' needs soft targets (the .soft.npz written by `distill aggregate`)")
    started = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layer = pick_layer(train_docs, layer)
    labels = list(cfg.labels)
    tags = tagging.bio_tags(labels)
    id2label = dict(enumerate(tags))
    label2id = {t: i for i, t in id2label.items()}

    set_seed(cfg.seed)
    if model_factory is not None:
        model, tokenizer = model_factory(len(tags), id2label, label2id)
        base_desc: dict[str, Any] = {"name": cfg.base_model, "resolved": "built by model_factory"}
    else:
        base = resolve_base_model(cfg.base_model)
        tokenizer = AutoTokenizer.from_pretrained(base, use_fast=True)
        model = AutoModelForTokenClassification.from_pretrained(base, num_labels=len(tags), id2label=id2label, label2id=label2id)
        base_desc = {"name": cfg.base_model, "resolved": base}
        if base == str(minilm_dir(verify=False)):
            base_desc["sha256"] = MINILM_SHA256
    if cfg.layers:
        base_desc["layers_kept"] = keep_layers(model, cfg.layers)
    if not getattr(tokenizer, "is_fast", False):
        raise TrainingDataError(f"{cfg.base_model}: the student needs a fast tokenizer (tokenizer.json)")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if tokenizer.model_max_length and cfg.max_length > tokenizer.model_max_length:
        raise ValueError(f"max_length {cfg.max_length} exceeds the model's {tokenizer.model_max_length}")

    feats, stats = build_features(train_docs, tokenizer, labels, layer, cfg.max_length, cfg.stride, soft)
    record = {"config": dataclasses.asdict(cfg), "layer": layer, "documents": sorted(d.id for d in train_docs),
              "data_sha256": _docs_fingerprint(train_docs, layer), "soft_sha256": _soft_fingerprint(soft),
              "dev_sha256": _docs_fingerprint(dev_docs or [], GOLD)}
    _check_run_config(out / CHECKPOINTS, json.loads(json.dumps(record)))
    log.info("train: %d windows (%d tokens) from %d documents", stats.windows, stats.tokens, stats.documents)

    stage1 = _run_stage(model, tokenizer, feats, out / CHECKPOINTS, cfg, cfg.learning_rate, cfg.epochs, cfg.loss,
                        dev_docs, pad_id, progress, callbacks, o_weight=cfg.o_weight if layer != GOLD else 1.0)
    model = stage1.pop("model")
    stages = {"silver" if layer != GOLD else "gold": stage1}
    gold_stats = None
    if gold_docs and cfg.gold_epochs > 0:
        gfeats, gold_stats = build_features(gold_docs, tokenizer, labels, GOLD, cfg.max_length, cfg.stride)
        # the gold stage continues stage 1's model: its checkpoints belong to that stage-1 run only
        grecord = {"config": dataclasses.asdict(cfg), "documents": sorted(d.id for d in gold_docs),
                   "data_sha256": _docs_fingerprint(gold_docs, GOLD),
                   "stage1_sha256": hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()}
        _check_run_config(out / CHECKPOINTS_GOLD, json.loads(json.dumps(grecord)))
        stage2 = _run_stage(model, tokenizer, gfeats, out / CHECKPOINTS_GOLD, cfg, cfg.gold_learning_rate,
                            cfg.gold_epochs, "ce", dev_docs, pad_id, progress, callbacks, max_steps=-1)
        model = stage2.pop("model")
        stages["gold_finetune"] = stage2

    model.eval()
    tokenizer.backend_tokenizer.no_truncation()
    tokenizer.backend_tokenizer.no_padding()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    tagging.write_labels_json(out, labels, cfg.max_length, cfg.stride, pad_token_id=pad_id)
    scores: dict[str, Any] = {}
    if dev_docs:
        scores["dev"] = span_scores(model, tokenizer, dev_docs, labels, cfg.max_length, cfg.stride, pad_id, cfg.eval_batch_size)
    if test_docs:
        scores["test"] = span_scores(model, tokenizer, test_docs, labels, cfg.max_length, cfg.stride, pad_id, cfg.eval_batch_size)
    teachers = sorted({n for d in train_docs for n in d.layers if n not in (layer, GOLD)})
    card = {
        "base_model": base_desc,
        "labels": labels,
        "tags": tags,
        "train_layer": layer,
        "loss": cfg.loss,
        "hyper_parameters": dataclasses.asdict(cfg),
        "data": {**dict(data or {}), "train_documents": len(train_docs), "dev_documents": len(dev_docs or []),
                 "test_documents": len(test_docs or []),
                 "gold_finetune_documents": len(gold_docs or []) if "gold_finetune" in stages else 0,
                 "features": stats.to_dict(), "gold_features": gold_stats.to_dict() if gold_stats else None},
        "teachers": teachers,
        "stages": stages,
        "scores": scores,
        "wall_seconds": round(time.time() - started, 1),
        "torch_threads": torch.get_num_threads(),
        "versions": _versions(),
    }
    (out / CARD_JSON).write_text(json.dumps(card, indent=2, default=str) + "\n")
    (out / CARD_MD).write_text(render_card(card))
    if not keep_checkpoints:
        for d in (CHECKPOINTS, CHECKPOINTS_GOLD):
            shutil.rmtree(out / d, ignore_errors=True)
    return TrainResult(out, card)


def _versions() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def render_card(card: Mapping[str, Any]) -> str:
    """A short human-readable training card (the JSON beside it has everything)."""
    hp = card["hyper_parameters"]
    lines = [
        "# Training card", "",
        f"- base model: `{card['base_model']['name']}` ({card['base_model']['resolved']})",
        f"- labels: {', '.join(card['labels'])}; trained on layer `{card['train_layer']}` with loss `{card['loss']}`"
        + (f" (T={hp['temperature']}, kd_alpha={hp['kd_alpha']})" if card["loss"] == "kd" else ""),
        f"- teachers (layers present in the training data): {', '.join(card['teachers']) or 'none'}",
        f"- data: {json.dumps({k: v for k, v in card['data'].items() if k not in ('features', 'gold_features')})}",
        f"- windows: {card['data']['features']['windows']} ({card['data']['features']['tokens']} tokens); "
        f"spans per label: {card['data']['features']['spans']}; overlaps dropped: "
        f"{card['data']['features']['overlaps_resolved']}; spans widened to word edges: {card['data']['features']['misaligned']}"
        f"; spans covering no word (left out): {card['data']['features'].get('untaggable', 0)}",
        f"- hyper-parameters: max_length={hp['max_length']}, stride={hp['stride']}, epochs={hp['epochs']}, "
        f"max_steps={hp['max_steps']}, batch={hp['batch_size']}x{hp['grad_accum']}, lr={hp['learning_rate']} "
        f"(head x{hp.get('head_lr_multiplier', 1)}), "
        f"warmup={hp['warmup_ratio']}, weight_decay={hp['weight_decay']}, patience={hp['patience']}, seed={hp['seed']}"
        + (f", gold stage: {hp['gold_epochs']} epochs at lr={hp['gold_learning_rate']}" if hp["gold_epochs"] else ""),
        f"- wall time: {card['wall_seconds']} s on {card['torch_threads']} torch threads; versions: {card['versions']}",
        "",
    ]
    for name, st in card["stages"].items():
        lines.append(f"## Stage `{name}`: {st['global_step']} steps, train loss {st['train_loss']}, "
                     f"best dev relaxed F1 {st['best_dev_relaxed_f1']} ({st['best_checkpoint']})")
        for h in st["dev_history"]:
            lines.append(f"- epoch {h['epoch']}: dev relaxed F1 {h['relaxed_f1']}, exact F1 {h['exact_f1']}")
        lines.append("")
    for split, sc in card["scores"].items():
        lines.append(f"## Scores on {split} (final model)")
        lines.append(f"- relaxed micro P/R/F1: {sc['relaxed_precision']} / {sc['relaxed_recall']} / {sc['relaxed_f1']}")
        lines.append(f"- exact micro P/R/F1: {sc['exact_precision']} / {sc['exact_recall']} / {sc['exact_f1']}")
        lines.append("- relaxed F1 per label: " + ", ".join(f"{k[11:]} {v}" for k, v in sc.items() if k.startswith("relaxed_f1_")))
        lines.append("")
    return "\n".join(lines)
