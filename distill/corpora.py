"""Corpus registry: where each gold (or unlabelled) corpus lives, how its types map to our labels,
and its train/dev/test splits.

The data directory is never guessed from the package location: it comes from an argument
(``--data-dir`` on the CLI, ``data_dir`` in a recipe) or ``$DISTILL_DATA_DIR``, so an on-premise
install points at its own copy and tests point at ``../shared/data``. Corpora without an official
split get a deterministic one from a hash of the document id (stable when documents are added or
removed, independent of file order), documented in docs/corpora.md.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

from distill.documents import DISEASE, GOLD, MEDICATION, SYMPTOM, Document
from distill.io.report import ReadReport

log = logging.getLogger(__name__)

ENV_DATA_DIR = "DISTILL_DATA_DIR"
SPLITS = ("train", "dev", "test")
#: hash buckets (0-99) per split for corpora without an official split: 60 / 20 / 20
HASH_SPLIT = {"train": range(0, 60), "dev": range(60, 80), "test": range(80, 100)}


class UnknownCorpus(ValueError):
    """Neither a registered corpus name nor an existing file or folder."""


class CorpusNotFound(FileNotFoundError):
    """A registered corpus is missing from the data directory (the message names the path)."""


@dataclass(frozen=True)
class CorpusSpec:
    """One registry entry. ``files`` maps an official split to its file(s) relative to the data
    dir; a single ``"all"`` entry means there is no official split and ``hash_split`` is used,
    keyed by ``split_key(doc_id)`` (e.g. the trial id for Chia so a trial's inclusion and
    exclusion criteria stay together)."""

    name: str
    format: str  # brat | pubtator | ada | jsonl
    files: Mapping[str, tuple[str, ...]]
    label_map: Mapping[str, str] | None
    licence: str
    description: str
    notes: str = ""
    split_key: Callable[[str], str] = field(default=lambda doc_id: doc_id, compare=False)

    @property
    def official_splits(self) -> bool:
        return "all" not in self.files

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.label_map.values()))) if self.label_map else ()

    def paths(self, data_dir: str | os.PathLike | None = None) -> dict[str, list[Path]]:
        root = resolve_data_dir(data_dir)
        return {split: [root / f for f in fs] for split, fs in self.files.items()}


def _chia_trial(doc_id: str) -> str:
    return doc_id.split("_")[0]


REGISTRY: dict[str, CorpusSpec] = {
    s.name: s
    for s in [
        CorpusSpec(
            "maccrobat",
            "brat",
            {"all": ("maccrobat2020/brat",)},
            {"Sign_symptom": SYMPTOM, "Disease_disorder": DISEASE, "Medication": MEDICATION},
            "CC BY 4.0 (Caufield et al., figshare 10.6084/m9.figshare.9764942)",
            "Clinical case reports (PMC), expert brat annotation; 140 of 200 docs shared.",
            "POLARITY=NEG on the event is kept as span.attributes['negated']; 31 discontinuous spans.",
        ),
        CorpusSpec(
            "ncbi_disease",
            "pubtator",
            {
                "train": ("ncbi_disease/NCBItrainset_corpus.txt",),
                "dev": ("ncbi_disease/NCBIdevelopset_corpus.txt",),
                "test": ("ncbi_disease/NCBItestset_corpus.txt",),
            },
            {"SpecificDisease": DISEASE, "DiseaseClass": DISEASE, "Modifier": DISEASE, "CompositeMention": DISEASE},
            "Public domain (NLM, United States Government Work)",
            "PubMed abstracts, disease mentions normalised to MeSH/OMIM (Dogan et al. 2014).",
            "Official splits. Train repeats PMID 8528200 (kept once, reported); one train mention has "
            "trailing spaces in its mention column (kept with the text's own string, reported).",
        ),
        CorpusSpec(
            "bc5cdr",
            "pubtator",
            {
                "train": ("bc5cdr/CDR_TrainingSet.PubTator.txt",),
                "dev": ("bc5cdr/CDR_DevelopmentSet.PubTator.txt",),
                "test": ("bc5cdr/CDR_TestSet.PubTator.txt",),
            },
            {"Disease": DISEASE, "Chemical": MEDICATION},
            "Public domain (NCBI, United States Government Work)",
            "BioCreative V CDR: PubMed abstracts with Chemical and Disease mentions (Li et al. 2016).",
            "Approximate mapping: Chemical includes non-drug chemicals and drug classes; Disease "
            "includes many signs/symptoms. Official splits.",
        ),
        CorpusSpec(
            "chia",
            "brat",
            {"all": ("chia/chia_without_scope.zip",)},
            {"Condition": DISEASE, "Drug": MEDICATION},
            "CC BY 4.0 (Kury et al. 2020, figshare 10.6084/m9.figshare.11855817)",
            "Clinical-trial eligibility criteria (1,000 trials x inclusion/exclusion), brat zip.",
            "Offsets count CRLF as two characters (read from bytes). 14 of 44,616 spans do not match "
            "their text and are reported, not kept. Split by trial id (NCT...).",
            split_key=_chia_trial,
        ),
        CorpusSpec(
            "ada",
            "ada",
            {"all": ("ada_case_reports/ada_case_reports.json.gz",)},
            {"finding": SYMPTOM, "condition": DISEASE},
            "unclear: 'Creative Common Licenses' (variant unspecified), Ada Health / DFKI",
            "53 PMC case reports (Schulz et al. 2020), finding / condition / factor / modifier.",
            "'finding' is broad (lab and imaging findings too); texts include NCBI page boilerplate.",
        ),
        CorpusSpec(
            "mtsamples",
            "jsonl",
            {"all": ("mtsamples/mtsamples_unique.jsonl.gz",)},
            None,
            "unclear (mtsamples.com, no explicit licence); research use only",
            "2,376 unlabelled de-identified transcription notes; input for teacher labelling.",
            "No gold layer; sample_name, specialties, description and urls are kept in meta.",
        ),
    ]
}


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else ``$DISTILL_DATA_DIR``; an error if neither."""
    value = data_dir if data_dir is not None else os.environ.get(ENV_DATA_DIR)
    if not value:
        raise CorpusNotFound(
            f"no data directory given: pass --data-dir (or data_dir in the recipe) or set ${ENV_DATA_DIR}"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise CorpusNotFound(f"data directory {path} does not exist")
    return path


def hash_bucket(key: str) -> int:
    """0-99 from the SHA-256 of ``key``: a split that depends on the id alone."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 100


def hash_split(key: str) -> str:
    """``train`` / ``dev`` / ``test`` for one id (60 / 20 / 20 by :func:`hash_bucket`)."""
    b = hash_bucket(key)
    return next(name for name, r in HASH_SPLIT.items() if b in r)


def parse_split(split: str | Iterable[str] | None) -> tuple[str, ...]:
    """``None``/``"all"`` -> all splits; ``"train+dev"`` or ``["train", "dev"]`` -> those."""
    if split is None or split == "all":
        return SPLITS
    parts = split.split("+") if isinstance(split, str) else list(split)
    parts = [p.strip() for p in parts]
    bad = [p for p in parts if p not in SPLITS]
    if bad or not parts:
        raise ValueError(f"unknown split {split!r}: use one of {SPLITS}, 'all', or a '+'-joined combination")
    return tuple(dict.fromkeys(parts))


def get_spec(name: str) -> CorpusSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownCorpus(f"unknown corpus {name!r}; registered: {', '.join(REGISTRY)}") from None


def list_corpora() -> list[CorpusSpec]:
    return list(REGISTRY.values())


def describe(name: str | None = None, data_dir: str | os.PathLike | None = None) -> str:
    """A readable description of one corpus (or all): path, labels, splits, licence, presence."""
    specs = [get_spec(name)] if name else list_corpora()
    try:
        root: Path | None = resolve_data_dir(data_dir)
    except CorpusNotFound:
        root = None
    out = []
    for s in specs:
        splits = ", ".join(s.files) if s.official_splits else "train/dev/test by hash of id (60/20/20)"
        files = [f for fs in s.files.values() for f in fs]
        where = ", ".join(files)
        if root is not None:
            missing = [f for f in files if not (root / f).exists()]
            where += f"  [{'missing: ' + ', '.join(missing) if missing else 'present'} under {root}]"
        lmap = ", ".join(f"{k}->{v}" for k, v in s.label_map.items()) if s.label_map else "unlabelled"
        out.append(
            f"{s.name}: {s.description}\n  format: {s.format}; path: {where}\n  labels: {lmap}\n"
            f"  splits: {splits}\n  licence: {s.licence}" + (f"\n  notes: {s.notes}" if s.notes else "")
        )
    return "\n".join(out)


def _read(fmt: str, path: Path, label_map: Mapping[str, str] | None, layer: str, on_mismatch: str,
          report: ReadReport, select: Callable[[str], bool] | None) -> list[Document]:
    if fmt == "brat":
        from distill.io.brat import read_brat

        return list(read_brat(path, label_map, layer, on_mismatch=on_mismatch, report=report, select=select))
    if fmt == "pubtator":
        from distill.io.pubtator import read_pubtator

        return list(read_pubtator(path, label_map, layer, on_mismatch=on_mismatch, report=report, select=select))
    if fmt == "ada":
        from distill.io.ada import read_ada

        return list(read_ada(path, label_map, layer, on_mismatch=on_mismatch, report=report, select=select))
    if fmt != "jsonl":
        raise ValueError(f"unknown corpus format {fmt!r}")
    from distill.io.jsonl import read_jsonl

    out = []
    for d in read_jsonl(path, entities_layer=layer):
        if select is not None and not select(d.id):
            continue
        if label_map is not None and layer in d.layers:  # same contract as the other readers
            kept = []
            for s in d.layers[layer]:
                if s.label in label_map:
                    kept.append(replace(s, label=label_map[s.label]))
                    report.kept[label_map[s.label]] += 1
                else:
                    report.dropped_types[s.label] += 1
            d = d.with_layers(**{layer: kept})
        else:
            for s in d.layers.get(layer, ()):
                report.kept[s.label] += 1
        report.documents += 1
        out.append(d)
    return out


def _looks_like_pubtator(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = next((line for line in fh if line.strip()), "")
    except OSError:
        return False
    return bool(re.match(r"[^\t|]+\|t\|", first))


def _path_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if path.is_dir() or name.endswith(".zip"):
        return "brat"
    if "pubtator" in name or _looks_like_pubtator(path):
        return "pubtator"
    raise UnknownCorpus(
        f"{path}: cannot tell its format (expected a .jsonl[.gz] file, a brat folder or .zip, "
        f"or a PubTator file starting with 'PMID|t|title')"
    )


def load_corpus(
    name: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    split: str | Iterable[str] | None = None,
    *,
    layer: str = GOLD,
    label_map: Mapping[str, str] | None = None,
    on_mismatch: str = "report",
    report: ReadReport | None = None,
) -> list[Document]:
    """Documents of a registered corpus (gold layer ``layer`` already in our labels) or of a
    plain path (a .jsonl[.gz] file, a brat folder/zip, a PubTator file, recognised by its first line; types kept as they are
    unless ``label_map`` is given).

    ``split``: ``None``/"all", "train", "dev", "test" or a combination such as "train+dev".
    Spans the reader could not keep are counted in ``report`` (pass one in to inspect it) and
    logged as a warning; ``on_mismatch="raise"`` makes them an error instead.
    """
    report = report if report is not None else ReadReport()
    wanted = parse_split(split)
    key = str(name)
    if key in REGISTRY:
        spec = REGISTRY[key]
        paths = spec.paths(data_dir)
        lmap = label_map if label_map is not None else spec.label_map
        report.source = report.source or spec.name
        needed = [s for s in wanted if s in paths] if spec.official_splits else ["all"]
        for p in (p for s in needed for p in paths[s]):
            if not p.exists():
                raise CorpusNotFound(f"corpus {spec.name!r} not found: expected {p}")
        docs: list[Document] = []
        if spec.official_splits:
            for s in wanted:
                for p in paths[s]:
                    docs.extend(_read(spec.format, p, lmap, layer, on_mismatch, report, None))
        else:
            select = None if wanted == SPLITS else (lambda i: hash_split(spec.split_key(i)) in wanted)
            for p in paths["all"]:
                docs.extend(_read(spec.format, p, lmap, layer, on_mismatch, report, select))
    else:
        path = Path(key).expanduser()
        if not path.exists() and data_dir is not None and not path.is_absolute():
            path = Path(data_dir) / path
        if not path.exists():
            raise UnknownCorpus(f"{key!r} is neither a registered corpus ({', '.join(REGISTRY)}) nor an existing path")
        report.source = report.source or str(path)
        select = None if wanted == SPLITS else (lambda i: hash_split(i) in wanted)
        docs = _read(_path_format(path), path, label_map, layer, on_mismatch, report, select)
    if report.n_problems:
        log.warning("%s", report.summary())
    return docs
