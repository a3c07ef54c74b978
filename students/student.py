"""``Student``: the autodistill-style face of the student package.

    student = Student.train(silver_docs, out="runs/x", base="minilm", dev=dev_docs, epochs=5)
    student = Student.load("runs/x")
    docs = student.predict(notes)              # copies with a "pred" layer
    student.export("runs/x/onnx", int8=True)   # ONNX (+ int8) via students.export

Everything here delegates to ``students.train``, ``students.predict`` and ``students.export``;
the model directory on disk is the single source of truth.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from distill.documents import Document
from students import tagging
from students.predict import PRED_LAYER, load_predictor
from students.train import CARD_JSON, TrainConfig, train_student


class Student:
    """A trained model directory plus a lazily loaded predictor."""

    def __init__(self, model_dir: str | os.PathLike):
        self.model_dir = Path(model_dir)
        self.labels_meta = tagging.read_labels_json(self.model_dir)
        self._predictor: Any = None

    @classmethod
    def train(cls, docs: Sequence[Document], out: str | os.PathLike = "runs/student", base: str = "minilm",
              dev: Sequence[Document] | None = None, layer: str | None = None, soft: Any = None,
              gold: Sequence[Document] | None = None, progress: bool = True, **hyper: Any) -> "Student":
        """Train on ``docs`` (layer ``silver`` or ``gold``); ``hyper`` are ``TrainConfig`` fields."""
        cfg = TrainConfig(base_model=base, **hyper)
        train_student(docs, out, cfg, dev_docs=dev, layer=layer, soft=soft, gold_docs=gold, progress=progress)
        return cls(out)

    @classmethod
    def load(cls, model_dir: str | os.PathLike) -> "Student":
        return cls(model_dir)

    @property
    def labels(self) -> list[str]:
        return list(self.labels_meta["labels"])

    @property
    def card(self) -> dict[str, Any]:
        path = self.model_dir / CARD_JSON
        return json.loads(path.read_text()) if path.is_file() else {}

    def predictor(self, batch_size: int = 32) -> Any:
        if self._predictor is None:
            self._predictor = load_predictor(self.model_dir, batch_size=batch_size)
        return self._predictor

    def predict(self, docs: Iterable[Document], layer: str = PRED_LAYER) -> list[Document]:
        """Copies of ``docs`` with the student's spans as layer ``layer``."""
        return self.predictor().predict(docs, layer)

    def export(self, out: str | os.PathLike | None = None, int8: bool = True, **kw: Any) -> Any:
        """ONNX export (fp32, plus int8 when asked), verified against torch by ``students.export``."""
        from students.export import export_student

        return export_student(self.model_dir, out, int8=int8, **kw)

    def __repr__(self) -> str:
        return f"Student({str(self.model_dir)!r}, labels={self.labels})"
