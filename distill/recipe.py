"""Recipes: one TOML file that fully describes a distillation run (spaCy-config style).

Validated with pydantic before any work starts: an unknown key is rejected with its path
(``student.epohcs``), a missing data file is named, and an API teacher without
``allow_external_api = true`` is refused — all before a single note is labelled.
Relative paths are resolved against the recipe file's folder, so a recipe runs from anywhere.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distill.documents import DEFAULT_LABELS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the key or file at fault."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(Strict):
    """A corpus from the registry (``maccrobat``) or a path, optionally one split of it."""

    corpus: str
    split: Optional[str] = None
    limit: Optional[int] = Field(None, ge=1, description="Take at most this many documents (in corpus order).")

    @field_validator("split")
    @classmethod
    def _split(cls, v: Optional[str]) -> Optional[str]:
        from distill.corpora import parse_split

        parse_split(v)  # a misspelt split fails here, not after the teachers have run
        return v


class DataConfig(Strict):
    data_dir: Optional[str] = Field(None, description="Folder of registered corpora; relative to the recipe.")
    notes: list[DataSource] = Field(min_length=1, description="Unlabelled notes the teachers label (gold layers are dropped).")
    dev: Optional[DataSource] = Field(None, description="Gold dev set: teacher weights, early stopping.")
    test: list[DataSource] = Field(default_factory=list, description="Gold test sets scored in the bench.")
    human_train: Optional[DataSource] = Field(None, description="Gold training set for the human-label student.")


class TeacherConfig(Strict):
    spec: str = Field(description="family:name, e.g. ontology:open, openai:gpt-4o-mini, gemini:gemini-2.0-flash.")
    options: dict[str, Any] = Field(default_factory=dict)


class AggregateConfig(Strict):
    method: Literal["union", "priority", "majority", "weighted", "label_model"] = "weighted"
    layers: list[str] = Field(default_factory=list, description="Teacher layers to combine (default: all).")
    options: dict[str, Any] = Field(default_factory=dict)


class StudentConfig(Strict):
    base_model: str = "minilm"
    targets: Literal["hard", "soft"] = "soft"
    human_baseline: bool = True
    options: dict[str, Any] = Field(default_factory=dict, description="Training hyper-parameters passed to students.train.")


class SelfTrainingConfig(Strict):
    rounds: int = Field(0, ge=0, le=5, description="Rounds of: train a student, add its confident spans to the silver layer.")
    threshold: Optional[float] = Field(None, ge=0.0, le=1.0, description="Span confidence a student span needs "
                                       "(default: picked on the gold dev set each round).")


class CompressConfig(Strict):
    layers: int = Field(0, ge=0, description="Train a student with this many layers from the distilled one's soft "
                        "logits and its own layers (0: no compressed student).")
    options: dict[str, Any] = Field(default_factory=dict, description="Training hyper-parameters for the compressed student.")


class ExportConfig(Strict):
    enabled: bool = True
    int8: bool = True


class BenchTeacher(TeacherConfig):
    """A teacher that is benchmarked but labels no training notes: an LLM teacher on a CPU budget
    (tens of seconds per note) still gets a measured row, on a small fixed set of notes."""

    max_notes: Optional[int] = Field(None, ge=1, description="Time and score it on the first N test notes only.")
    priced_as: list[str] = Field(default_factory=list,
                                 description="API models priced from its token ledger (rows 'priced, not run').")

    @field_validator("priced_as")
    @classmethod
    def _priced(cls, v: list[str]) -> list[str]:
        from teachers.cost import price_for

        for model in v:
            price_for(model)  # UnknownPrice (a ValueError) names the known models
        return v


class CombinedTeacher(Strict):
    """Teachers combined through distill.aggregate in the bench, e.g. LLM spans + a dictionary."""

    name: Optional[str] = Field(None, description="Row name (default: 'combined: a + b (method)').")
    layers: list[str] = Field(min_length=2, description="Specs of teachers or bench.teachers, in priority order.")
    method: Literal["union", "priority", "majority", "label_model"] = "union"
    options: dict[str, Any] = Field(default_factory=dict, description="Other distill.aggregate.aggregate keywords.")

    @property
    def row_name(self) -> str:
        return self.name or f"combined: {' + '.join(self.layers)} ({self.method})"


class BenchConfig(Strict):
    enabled: bool = True
    max_docs: Optional[int] = Field(None, ge=1)
    reference: Optional[str] = Field(None, description="Teacher the ratios are computed against (default: the first).")
    torch: bool = True
    cpu_price: Optional[str | float] = Field(None, description="Machine key from distill.cost or $/hour for CPU systems.")
    gpu_price: Optional[str | float] = Field(None, description="Machine key or $/hour for GPU systems.")
    batch_api: bool = Field(False, description="Bill API teachers at Batch API prices (50% off).")
    options: dict[str, Any] = Field(default_factory=dict, description="Other distill.bench.BenchConfig fields (repeats, ...).")
    teachers: list[BenchTeacher] = Field(default_factory=list, description="Teachers benchmarked only (see BenchTeacher).")
    combined: list[CombinedTeacher] = Field(default_factory=list, description="Combined teachers scored in the bench.")

    @model_validator(mode="after")
    def _bench_teachers(self) -> "BenchConfig":
        specs = [t.spec for t in self.teachers]
        if len(set(specs)) != len(specs):
            raise ValueError(f"bench.teachers must be distinct, got {specs}")
        return self


class ReportConfig(Strict):
    title: Optional[str] = None


class Recipe(Strict):
    name: str
    description: str = ""
    output_dir: str = Field(description="Where every step writes; relative to the recipe.")
    seed: int = 13
    allow_external_api: bool = False
    labels: list[str] = Field(default_factory=lambda: list(DEFAULT_LABELS))
    data: DataConfig
    teachers: list[TeacherConfig] = Field(min_length=1)
    aggregate: AggregateConfig = AggregateConfig()
    student: StudentConfig = StudentConfig()
    self_training: SelfTrainingConfig = SelfTrainingConfig()
    compress: CompressConfig = CompressConfig()
    export: ExportConfig = ExportConfig()
    bench: BenchConfig = BenchConfig()
    report: ReportConfig = ReportConfig()

    # resolved at load time, not part of the TOML
    base_dir: str = Field(".", exclude=True)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("labels must be a non-empty list without duplicates")
        return v

    @model_validator(mode="after")
    def _teacher_names_unique(self) -> "Recipe":
        specs = [t.spec for t in self.teachers]
        if len(set(specs)) != len(specs):
            raise ValueError(f"teachers must be distinct, got {specs}")
        unknown = set(self.aggregate.layers) - set(specs)
        if unknown:
            raise ValueError(f"aggregate.layers names teachers that are not in the recipe: {sorted(unknown)}")
        if self.self_training.rounds and self.student.targets == "soft":
            raise ValueError("self_training adds hard student spans to the silver layer, which has no soft targets "
                             "for them: set student.targets = 'hard'")
        if self.self_training.rounds and self.self_training.threshold is None and not self.data.dev:
            raise ValueError("self_training without a threshold picks one on the gold dev set: set data.dev or "
                             "self_training.threshold")
        return self

    def path(self, value: str | None) -> Path | None:
        """Resolve a recipe-relative path."""
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()

    def teacher_options(self, t: "TeacherConfig") -> dict[str, Any]:
        """Options with ``./`` and ``../`` paths resolved against the recipe's folder."""
        return {k: str(self.path(v)) if isinstance(v, str) and v.startswith(("./", "../")) else v for k, v in t.options.items()}

    @property
    def out(self) -> Path:
        return self.path(self.output_dir)  # type: ignore[return-value]

    @property
    def data_dir(self) -> Path | None:
        return self.path(self.data.data_dir)

    def section_hash(self, *keys: str) -> str:
        """Fingerprint of the parts of the recipe a step depends on (its manifest compares it)."""
        dumped = self.model_dump(mode="json")
        part = {k: dumped.get(k) for k in keys}
        return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]


def _format_validation(e: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid recipe"]
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key (check the spelling)")
        elif err["type"] == "missing":
            lines.append(f"  {loc}: required key is missing")
        else:
            lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def _override_value(text: str) -> Any:
    """A TOML value (``3``, ``true``, ``["a", "b"]``, ``"x"``); anything else is a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (``--set``) to a parsed recipe, in order.

    Why: comparing teacher combinations or hyper-parameters should be one command, not a copied
    recipe. Numbers index lists (``teachers.0.options.model=...``); missing tables are created,
    and a misspelt key is then rejected by validation with its path like any other.
    """
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = [k.strip() for k in key.strip().split(".")]
        if not sep or not all(parts):
            raise RecipeError(f"--set {item!r}: expected dotted.key=value, e.g. student.targets=hard")
        node: Any = raw
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise RecipeError(f"--set {item!r}: {where} is not an index of a list of {len(node)}")
                if last:
                    node[int(part)] = _override_value(value)
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = _override_value(value)
                else:
                    node = node.setdefault(part, {})
            else:
                raise RecipeError(f"--set {item!r}: {'.'.join(parts[:depth])} is a value, not a table or list")
    return raw


def load_recipe(path: str | os.PathLike, check_files: bool = True, overrides: Sequence[str] = ()) -> Recipe:
    """Parse and validate a recipe (after ``--set`` overrides); every problem is a
    :class:`RecipeError` naming the key."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: not valid TOML ({e})") from None
    apply_overrides(raw, overrides)
    raw["base_dir"] = str(path.resolve().parent)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as e:
        raise RecipeError(_format_validation(e, str(path))) from None
    check_external(recipe, str(path))
    check_options(recipe, str(path))
    if check_files:
        check_data(recipe, str(path))
    return recipe


def check_external(recipe: Recipe, source: str) -> None:
    from teachers.registry import is_external, parse_spec

    for i, t in enumerate(recipe.teachers):
        try:
            parse_spec(t.spec)
        except ValueError as e:
            raise RecipeError(f"{source}: teachers.{i}.spec: {e}") from None
        if is_external(t.spec, t.options) and not recipe.allow_external_api:
            raise RecipeError(
                f"{source}: teachers.{i} ({t.spec}) sends note text to an external API; "
                "set allow_external_api = true if your data may leave this machine"
            )


def check_options(recipe: Recipe, source: str) -> None:
    """The free-form ``options`` tables are passed as keyword arguments to the step's function;
    a misspelt one must fail at load time, not after hours of (paid) labelling."""
    import dataclasses
    import inspect

    from distill.aggregate import aggregate
    from distill.bench import BenchConfig as BenchSettings
    from students.train import TrainConfig

    set_by_recipe = {"docs", "layers", "method", "labels", "weights", "out_layer", "base_model", "seed", "progress", "prices"}
    accepted = {
        "aggregate.options": set(inspect.signature(aggregate).parameters),
        "student.options": {f.name for f in dataclasses.fields(TrainConfig)},
        "bench.options": {f.name for f in dataclasses.fields(BenchSettings)},
    }
    accepted["compress.options"] = accepted["student.options"] - {"layers", "loss", "max_length", "stride"}
    given = {"aggregate.options": recipe.aggregate.options, "student.options": recipe.student.options,
             "bench.options": recipe.bench.options, "compress.options": recipe.compress.options}
    for key, opts in given.items():
        allowed = accepted[key] - set_by_recipe
        bad = sorted(set(opts) - allowed)
        if bad:
            raise RecipeError(f"{source}: {key}: unknown option{'s' if len(bad) > 1 else ''} {', '.join(bad)} "
                              f"(accepted: {', '.join(sorted(allowed))})")


def check_data(recipe: Recipe, source: str) -> None:
    """Every corpus and file the recipe names must exist before any work starts."""
    from distill.corpora import REGISTRY

    data_dir = recipe.data_dir
    if recipe.data.data_dir is not None and not (data_dir and data_dir.is_dir()):
        raise RecipeError(f"{source}: data.data_dir: folder {data_dir} does not exist")
    named: list[tuple[str, DataSource]] = [(f"data.notes.{i}", s) for i, s in enumerate(recipe.data.notes)]
    named += [(f"data.test.{i}", s) for i, s in enumerate(recipe.data.test)]
    named += [(k, s) for k, s in (("data.dev", recipe.data.dev), ("data.human_train", recipe.data.human_train)) if s]
    for key, src in named:
        if src.corpus in REGISTRY:
            root = data_dir or (Path(os.environ["DISTILL_DATA_DIR"]) if os.environ.get("DISTILL_DATA_DIR") else None)
            if root is None:
                raise RecipeError(f"{source}: {key}: corpus {src.corpus!r} needs data.data_dir (or $DISTILL_DATA_DIR)")
            for files in REGISTRY[src.corpus].files.values():
                for f in files:
                    if not (root / f).exists():
                        raise RecipeError(f"{source}: {key}: corpus {src.corpus!r} not found: expected {root / f}")
        elif not recipe.path(src.corpus).exists():  # type: ignore[union-attr]
            raise RecipeError(f"{source}: {key}: no such corpus or file {src.corpus!r} (looked at {recipe.path(src.corpus)})")
