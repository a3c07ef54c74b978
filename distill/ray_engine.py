"""Scale-out on Ray Data: the same teacher and predictor objects, run inside ``map_batches`` actors.

Each actor builds its teacher (``teachers.registry.make_teacher``) or student
(``students.predict.load_predictor``) once, then labels batches of notes. Results come back in
input order and are checked note by note against the input ids, so the caller writes exactly
what the single-process path writes. What a worker raises travels back as the exception itself
and is raised on the driver at the note it happened on: a failure is never a missing line.

``ray`` is an optional extra (``pip install 'clinical-distill[ray]'``); nothing else imports this
module unless ``--engine ray`` is asked for.
"""
from __future__ import annotations

import math
import pickle
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from distill.documents import Document, Span

#: most notes per ``map_batches`` call; a small corpus is cut finer, so that it spreads over the actors
BATCH_NOTES = 64


class EngineError(RuntimeError):
    """Ray is missing, unreachable, or returned something other than one result per note."""


def require_ray() -> None:
    """Fail before any work when the optional extra is missing."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise EngineError("--engine ray needs Ray: pip install 'clinical-distill[ray]'")


@dataclass(frozen=True)
class RayEngine:
    """Where the actors run and how many there are.

    ``address`` None starts (or reuses) a local Ray on this machine; ``"auto"`` joins the cluster
    that ``ray start --head`` runs here, ``"ray://host:10001"`` a remote one through Ray Client.
    ``actors`` None lets Ray Data grow the pool to what the cluster offers.
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    batch_notes: int = BATCH_NOTES

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise EngineError(f"the number of Ray actors must be at least 1, got {self.actors}")
        if self.batch_notes < 1:
            raise EngineError(f"batch_notes must be at least 1, got {self.batch_notes}")

    def start(self) -> Any:
        """Connect to Ray (once per process); returns the ``ray`` module."""
        require_ray()
        import ray

        if not ray.is_initialized():
            local = {"include_dashboard": False} if self.address is None else {}
            try:
                ray.init(address=self.address, **local)
            except ConnectionError as e:
                raise EngineError(f"cannot reach a Ray cluster at {self.address!r}: {e}") from None
        return ray

    def map_notes(self, worker: type, docs: Sequence[Document], **worker_kw: Any) -> Iterator[tuple[Document, Any]]:
        """``(doc, result)`` for every note, in input order, as the actors finish them; an
        exception a worker caught for a note is raised here, after the notes before it."""
        if not docs:
            return
        ray = self.start()
        ctx = ray.data.DataContext.get_current()  # this process's Ray Data settings, before the dataset copies them
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False  # the caller draws one bar per note
        width = self.actors or max(1, int(ray.cluster_resources().get("CPU", 1) // self.cpus_per_actor))
        blocks = min(len(docs), max(math.ceil(len(docs) / self.batch_notes), width))  # one batch per block
        ds = ray.data.from_items([{"id": d.id, "text": d.text} for d in docs], override_num_blocks=blocks)
        pool = ray.data.ActorPoolStrategy(size=self.actors) if self.actors else ray.data.ActorPoolStrategy(min_size=1)
        out = ds.map_batches(worker, fn_constructor_kwargs=worker_kw, batch_format="pyarrow",
                             batch_size=math.ceil(len(docs) / blocks), compute=pool, num_cpus=self.cpus_per_actor)
        n = 0
        for row in out.iter_rows():
            if n == len(docs):
                raise EngineError(f"Ray returned more results than the {len(docs)} notes sent")
            doc = docs[n]
            if row["id"] != doc.id:
                raise EngineError(f"Ray returned note {row['id']!r} where {doc.id!r} was expected (result {n + 1}): "
                                  f"the output order was not kept")
            result, error = pickle.loads(row["result"])
            if error is not None:
                raise error
            n += 1
            yield doc, result
        if n != len(docs):
            raise EngineError(f"Ray returned {n} results for {len(docs)} notes")

    def teacher(self, spec: str, allow_external: bool = False, **options: Any) -> "RayTeacher":
        """A teacher whose ``label`` runs on the actors (see :class:`RayTeacher`)."""
        return RayTeacher(self, spec, allow_external, options)

    def predict(self, model: str, docs: Sequence[Document], layer: str, batch_size: int = 32,
                **predictor_kw: Any) -> list[Document]:
        """Copies of ``docs`` with the student's spans as layer ``layer``, like ``predictor.predict``."""
        kw = {"model": str(model), "batch_size": batch_size, "predictor_kw": predictor_kw}
        return [d.with_layers(**{layer: spans}) for d, spans in self.map_notes(PredictWorker, docs, **kw)]


class RayTeacher:
    """The teacher protocol over Ray actors, so ``label_corpus`` (resume, failures, ledger) is unchanged.

    A driver copy is built first with the same ``make_teacher`` call: bad specs and options fail
    before any actor starts, with the plain path's messages, and the copy gives the layer name.
    (An in-process LLM teacher is therefore loaded on the driver too.) The actors' usage and
    ``stats`` are added to the driver copy as batches return; anything else (``summary()``) is its.
    """

    def __init__(self, engine: RayEngine, spec: str, allow_external: bool, options: dict[str, Any]):
        from teachers.registry import make_teacher

        self.local = make_teacher(spec, allow_external=allow_external, **options)
        self.name = self.local.name
        self.usage = self.local.usage
        self._engine = engine
        self._worker_kw = {"spec": spec, "allow_external": allow_external, "options": dict(options)}

    def __getattr__(self, attr: str) -> Any:
        if attr == "local":  # not built (yet): no recursion
            raise AttributeError(attr)
        return getattr(self.local, attr)

    def label(self, docs: Iterable[Document]) -> Iterator[list[Span]]:
        stats = getattr(self.local, "stats", None)
        for _, (spans, usage, stat_delta) in self._engine.map_notes(TeacherWorker, list(docs), **self._worker_kw):
            if usage is not None:
                self.usage.add(usage)
            if stat_delta and isinstance(stats, Counter):
                stats.update(stat_delta)
            yield spans


def _notes(batch: Any) -> list[Document]:
    return [Document(i, t) for i, t in zip(batch.column("id").to_pylist(), batch.column("text").to_pylist())]


def _rows(docs: list[Document], results: list[Any], error: BaseException | None) -> Any:
    """One row per note: its result, or (from the first note without one) the batch's error."""
    import pyarrow as pa

    payload = [pickle.dumps((r, None)) for r in results]
    if len(results) < len(docs):
        err = _picklable(error or EngineError(f"the worker returned {len(results)} results for {len(docs)} notes"))
        payload += [pickle.dumps((None, err))] * (len(docs) - len(results))
    return pa.table({"id": [d.id for d in docs], "result": pa.array(payload, pa.binary())})


def _picklable(error: BaseException) -> BaseException:
    """The exception itself when it survives the trip to the driver, else its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return EngineError(f"{type(error).__name__}: {error}")


class TeacherWorker:
    """A ``map_batches`` actor: one teacher, built once; per note ``(spans, usage delta, stats delta)``,
    the batch's usage and stats riding on its first note."""

    def __init__(self, spec: str, allow_external: bool, options: dict[str, Any]):
        self.error: BaseException | None = None
        try:
            from teachers.registry import make_teacher

            self.teacher = make_teacher(spec, allow_external=allow_external, **options)
        except Exception as e:  # raised on the driver at the first note, like any other failure
            self.error = e

    def __call__(self, batch: Any) -> Any:
        from teachers.base import Usage

        docs = _notes(batch)
        if self.error is not None:
            return _rows(docs, [], self.error)
        before = Usage().add(self.teacher.usage)
        stats = getattr(self.teacher, "stats", None)
        stats_before = Counter(stats) if isinstance(stats, Counter) else None
        found: list[list[Span]] = []
        error = None
        try:
            for spans in self.teacher.label(docs):
                found.append(spans)
        except Exception as e:
            error = e
        usage = Usage().add(self.teacher.usage)
        for k, v in before.to_dict().items():
            setattr(usage, k, getattr(usage, k) - v)
        delta = {k: v - stats_before[k] for k, v in stats.items()} if stats_before is not None else None  # zeros kept
        results = [(s, usage, delta) if k == 0 else (s, None, None) for k, s in enumerate(found)]
        return _rows(docs, results, error)


class PredictWorker:
    """A ``map_batches`` actor: one student, loaded once; per note its predicted spans."""

    def __init__(self, model: str, batch_size: int, predictor_kw: dict[str, Any]):
        self.error: BaseException | None = None
        try:
            from students.predict import load_predictor

            self.predictor = load_predictor(model, batch_size=batch_size, **predictor_kw)
        except Exception as e:
            self.error = e

    def __call__(self, batch: Any) -> Any:
        docs = _notes(batch)
        if self.error is not None:
            return _rows(docs, [], self.error)
        texts = [d.text for d in docs]
        step = getattr(self.predictor, "docs_per_chunk", BATCH_NOTES)  # the chunks predict_file uses
        found: list[list[Span]] = []
        try:
            for i in range(0, len(texts), step):
                found.extend(self.predictor.predict_texts(texts[i : i + step]))
        except Exception as e:
            return _rows(docs, found, e)
        return _rows(docs, found, None)
