"""Student-to-student distillation: a shallower student learns from a trained student's soft logits.

Why: on a CPU without int8 dot-product instructions, quantisation alone stops near 1.7x, while
compute falls with depth. The small student starts from the big one's own fine-tuned layers
(spread from first to last, the head kept: ``train.keep_layers``) and is trained with the KD loss
on the big student's per-word tag distributions over the same unlabelled notes, so it learns the
big student's decisions, including its confidence, instead of the teacher's hard silver spans.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

from distill.documents import Document
from students import tagging


def soft_targets_from_model(model_dir: str | os.PathLike, docs: Sequence[Document], temperature: float = 1.0,
                            batch_size: int = 32) -> Any:
    """The trained student's word-level tag distributions on ``docs``, as ``SoftTargets``."""
    from distill.aggregate import SoftTargets
    from students.predict import TorchPredictor

    pred = TorchPredictor.from_dir(model_dir, batch_size=batch_size)
    soft = SoftTargets(list(pred.tags))
    for doc, dist in zip(docs, pred.word_distributions([d.text for d in docs], temperature)):
        soft.docs[doc.id] = dist
    return soft


def compress_student(teacher_dir: str | os.PathLike, docs: Sequence[Document], out_dir: str | os.PathLike,
                     layers: int, config: Any = None, dev_docs: Sequence[Document] | None = None,
                     test_docs: Sequence[Document] | None = None, layer: str | None = None, progress: bool = True) -> Any:
    """Train a ``layers``-deep student from ``teacher_dir`` (its weights and its soft logits on
    ``docs``); ``docs`` must carry the silver ``layer`` the teacher student was trained on (its hard
    tags are the CE half of the loss when ``kd_alpha`` < 1)."""
    from students.train import TrainConfig, train_student

    meta = tagging.read_labels_json(teacher_dir)
    base = config or TrainConfig()
    cfg = dataclasses.replace(base, base_model=str(Path(teacher_dir)), labels=tuple(meta["labels"]), layers=layers,
                              loss="kd", max_length=meta["max_length"], stride=meta["stride"])
    soft = soft_targets_from_model(teacher_dir, docs, cfg.temperature, cfg.eval_batch_size)
    return train_student(docs, out_dir, cfg, dev_docs=dev_docs, layer=layer, soft=soft, test_docs=test_docs,
                         data={"distilled_from": str(teacher_dir), "layers": layers}, progress=progress)
