"""Lexicons: normalised term → (label, concept id, source), compiled from ontology releases.

A lexicon is built from named *sources* (each a generator of raw ``Term`` records from one
release file), then filtered (stop words, short and over-long terms, chemical names, drug-list
acronyms; upper-case acronyms kept case-sensitive) and conflicts between labels are resolved by
source priority. Plurals and British spellings need no variant keys: the matcher's fold
handles them. The result is compiled into a matcher automaton once and cached on disk, keyed by
the sha256 of every source file, of the compile code and ``LEXICON_VERSION``, so a teacher loads
in under two seconds after the first build.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from distill.documents import DISEASE, MEDICATION, SYMPTOM
from ontologies.drugbank import read_drugbank_vocabulary
from ontologies.drugsatfda import read_products
from ontologies.matcher import Entry, Matcher, normalize
from ontologies.obo import read_obo
from ontologies.rxnorm import is_rrf, read_druglist, read_rxnconso
from ontologies.snomed import Rf2Snapshot

# Bump whenever filtering, variants or tokenisation change: it invalidates every cached lexicon.
LEXICON_VERSION = "3"

DATA = Path(__file__).resolve().parent / "data"
VENDORED = {
    "doid": DATA / "doid" / "doid_2024-01-31.obo.gz",
    "symp": DATA / "symp" / "symp.obo",
    "hpo": DATA / "hpo" / "hp_2017-04-13.obo.gz",
    "hpo_layperson": DATA / "hpo" / "layperson-synonyms.tsv",
    "drugbank": DATA / "drugbank" / "drugbank_vocabulary.csv.gz",
    "fda": DATA / "drugsatfda" / "Products.txt.gz",
    "clinical": DATA / "clinical" / "clinical_vocabulary.tsv",
    "stopwords": DATA / "clinical" / "stopwords.txt",
    "modifiers": DATA / "clinical" / "modifiers.tsv",
}


@dataclass(frozen=True)
class Term:
    text: str
    label: str
    concept: str
    source: str


class LexiconError(ValueError):
    """A configuration that cannot be built (unknown source, missing release file)."""


# --- sources: release file → raw terms --------------------------------------------------------

def obo_terms(path: Path, label: str, source: str) -> Iterator[Term]:
    for t in read_obo(path):
        for name in t.names():
            yield Term(name, label, t.id, source)


HPO_ROOTS_SKIPPED = {
    # Mode of inheritance, clinical modifier, frequency, mortality: not findings in a note.
    "HP:0000005", "HP:0012823", "HP:0040279", "HP:0040006", "HP:0031797",
}


def hpo_terms(path: Path, layperson: Path | None = None) -> Iterator[Term]:
    """HPO phenotypic abnormalities (names, EXACT synonyms, layperson synonyms) as SYMPTOM."""
    terms = {t.id: t for t in read_obo(path)}
    skipped: dict[str, bool] = {}

    def under_skipped_root(tid: str) -> bool:
        if tid in skipped:
            return skipped[tid]
        skipped[tid] = False  # guards against cycles
        t = terms.get(tid)
        res = tid in HPO_ROOTS_SKIPPED or bool(t and any(under_skipped_root(p) for p in t.is_a))
        skipped[tid] = res
        return res

    for t in terms.values():
        if t.id == "HP:0000001" or under_skipped_root(t.id):
            continue
        for name in t.names():
            yield Term(name, SYMPTOM, t.id, "hpo")
    if layperson is not None:
        with open(layperson, encoding="utf-8") as fh:
            next(fh, None)
            for line in fh:
                cols = line.rstrip("\n").split("\t")
                if len(cols) < 3:
                    continue
                tid = cols[0].strip("<>").rsplit("/", 1)[-1].replace("_", ":")
                if tid in terms and not under_skipped_root(tid):
                    yield Term(cols[2].strip().strip('"'), SYMPTOM, tid, "hpo")


def drugbank_terms(path: Path) -> Iterator[Term]:
    for d in read_drugbank_vocabulary(path):
        for name in d.names():
            yield Term(name, MEDICATION, f"DRUGBANK:{d.id}", "drugbank")


def fda_terms(path: Path) -> Iterator[Term]:
    """Brand and ingredient names, lower-cased: the FDA writes every name in capitals, which
    would otherwise look like acronyms to the filter."""
    seen: set[str] = set()
    for p in read_products(path):
        for name in (p.drug_name, *p.active_ingredients):
            if name and name not in seen:
                seen.add(name)
                yield Term(name.lower(), MEDICATION, f"FDA:{name}", "fda")


def rxnorm_terms(path: Path) -> Iterator[Term]:
    """An RXNCONSO.RRF file, or a one-name-per-line RxNorm-derived list."""
    if is_rrf(path):
        for a in read_rxnconso(path):
            yield Term(a.name, MEDICATION, a.concept, "rxnorm")
    else:
        for name in read_druglist(path):
            yield Term(name, MEDICATION, f"RXNORM-NAME:{name}", "rxnorm")


def snomed_terms(path: Path) -> Iterator[Term]:
    for term, label, concept in Rf2Snapshot(path).terms():
        yield Term(term, label, concept, "snomed")


def clinical_terms(path: Path) -> Iterator[Term]:
    """The project's curated general clinical vocabulary: ``term<TAB>label`` lines, ``#`` comments."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            term, _, label = line.partition("\t")
            if label not in (MEDICATION, DISEASE, SYMPTOM, "IGNORE"):
                raise LexiconError(f"{path}:{lineno}: label must be MEDICATION/DISEASE/SYMPTOM/IGNORE, got {label!r}")
            yield Term(term.strip(), label, f"CLIN:{normalize(term)}", "clinical")


@dataclass(frozen=True)
class Source:
    """One lexicon ingredient: the files it reads and how to turn them into terms."""

    name: str
    files: tuple[Path, ...]
    terms: Callable[[], Iterable[Term]]


def open_sources() -> list[Source]:
    """The offline default: openly licensed lexicons vendored in ``ontologies/data``."""
    v = VENDORED
    return [
        Source("doid", (v["doid"],), lambda: obo_terms(v["doid"], DISEASE, "doid")),
        Source("symp", (v["symp"],), lambda: obo_terms(v["symp"], SYMPTOM, "symp")),
        Source("hpo", (v["hpo"], v["hpo_layperson"]), lambda: hpo_terms(v["hpo"], v["hpo_layperson"])),
        Source("drugbank", (v["drugbank"],), lambda: drugbank_terms(v["drugbank"])),
        Source("fda", (v["fda"],), lambda: fda_terms(v["fda"])),
        Source("clinical", (v["clinical"],), lambda: clinical_terms(v["clinical"])),
    ]


def sources_for(config: str, rxnorm: str | os.PathLike | None = None,
                snomed: str | os.PathLike | None = None) -> list[Source]:
    """Sources of a named configuration: ``open``, ``rxnorm``, ``snomed`` or ``+`` combinations
    (also the single vendored parts: ``doid``, ``symp``, ``hpo``, ``drugbank``, ``fda``)."""
    by_name = {s.name: s for s in open_sources()}
    out: list[Source] = []
    for part in [p.strip() for p in config.split("+") if p.strip()] or ["open"]:
        if part == "open":
            out.extend(by_name.values())
        elif part in by_name:
            out.append(by_name[part])
        elif part == "rxnorm":
            if not rxnorm:
                raise LexiconError("the 'rxnorm' configuration needs rxnorm=<path to RXNCONSO.RRF or an RxNorm name list>")
            p = Path(rxnorm)
            if not p.is_file():
                raise LexiconError(f"RxNorm file not found: {p}")
            out.append(Source("rxnorm", (p,), lambda p=p: rxnorm_terms(p)))
        elif part == "snomed":
            if not snomed:
                raise LexiconError("the 'snomed' configuration needs snomed=<path to an RF2 release folder>")
            p = Path(snomed)
            if not p.is_dir():
                raise LexiconError(f"SNOMED CT release folder not found: {p}")
            files = tuple(sorted(f for f in p.rglob("sct2_*Snapshot*.txt")))
            out.append(Source("snomed", files, lambda p=p: snomed_terms(p)))
        else:
            raise LexiconError(f"unknown lexicon part {part!r} in {config!r}; known: open, rxnorm, snomed, {', '.join(by_name)}")
    names = [s.name for s in out]
    out = [s for i, s in enumerate(out) if s.name not in names[:i]]
    if "clinical" not in names:  # the analyte/vital-sign filter applies to every configuration
        path = VENDORED["clinical"]
        out.append(Source("filter", (path,), lambda: (t for t in clinical_terms(path) if t.label == "IGNORE")))
    return out


# --- filtering and conflicts -------------------------------------------------------------

def load_stopwords(path: Path = VENDORED["stopwords"]) -> frozenset[str]:
    with open(path, encoding="utf-8") as fh:
        return frozenset(normalize(l) for l in fh if l.strip() and not l.startswith("#"))


# Longer names (mostly HPO/DOID descriptive labels) essentially never occur verbatim in notes:
# on MTSamples, 5- and 6-word keys made 0.1% of matches but 20% of the automaton (load time).
MAX_TOKENS = 4
# Ontology-style descriptive labels that no clinician writes ("Abnormality of the ...").
_NOT_MENTIONS = ("abnormality of ", "abnormal ", "aplasia hypoplasia ", "morphological abnormality ")
_CHEMICAL = re.compile(r"\d.*[,\[\]]|\(\s*[RS]\s*\)|^\d|[\[\]{}]")
_ACRONYM = re.compile(r"^[A-Z0-9][A-Z0-9&/-]{1,6}s?$")

# Which label wins when several sources claim one key; the curated vocabulary overrides all.
# Drug lists come after the disease and symptom ontologies: their brand names include ordinary
# words and finding names ("Cough", "Seizures" are OTC product names).
SOURCE_PRIORITY = {"clinical": 0, "filter": 0, "snomed": 1, "doid": 2, "symp": 3, "rxnorm": 3, "drugbank": 3, "fda": 3, "hpo": 4}


def keep_term(term: Term, stop: frozenset[str]) -> tuple[str, str | None] | None:
    """``(key, case)`` for a usable term, or None for junk.

    Junk: very short keys, stop words and common English words, chemical/IUPAC names,
    over-long names (notes rarely spell out a 5-word phenotype label or drug name). Short upper-case terms are kept
    but matched case-sensitively, because in lower case they are ordinary words ("ALL", "MS").
    """
    text = term.text.strip()
    key = normalize(text)
    if not key or term.source not in ("clinical", "filter") and key in stop:
        return None
    ntok = len(key.split())
    if term.source in ("clinical", "filter"):
        return key, (" ".join(text.split()) if _ACRONYM.match(text) else None)
    if len(key) < 3 or ntok > MAX_TOKENS or not re.search(r"[a-z]{2}", key) or key.startswith(_NOT_MENTIONS):
        return None
    if term.label == MEDICATION and (_CHEMICAL.search(text) or ntok > 4):
        return None
    if _ACRONYM.match(text):
        # Acronyms from drug lists ("BAL", "PCP", "VPA") and HPO synonyms ("JVP", "ANA") mostly
        # name other things in notes; disease acronyms are kept, case-sensitively.
        return None if term.label == MEDICATION or term.source == "hpo" else (key, " ".join(text.split()))
    return key, None


# Single words naming a measured abnormality (low/high blood values, urine findings, blood counts)
# are signs that the notes then explain with a disease, whatever the ontology files them under.
_SIGN_WORD = re.compile(r"^(hyper|hypo)\w*(emia|tension|glycemia)$|^\w+(penia|cytosis|uria)$")


def relabel(term: Term, key: str) -> str:
    if term.label == DISEASE and term.source not in ("clinical", "filter") and _SIGN_WORD.match(key):
        return SYMPTOM
    return term.label


def compile_entries(terms: Iterable[Term], stop: frozenset[str]) -> dict[str, Entry]:
    """Resolve every key to one entry by source priority (the first source wins a tie)."""
    best: dict[str, tuple[int, Entry]] = {}
    for term in terms:
        kept = keep_term(term, stop)
        if kept is None:
            continue
        key, case = kept
        label = relabel(term, key)
        prio = SOURCE_PRIORITY.get(term.source, 5)
        # "Crohn's disease" is also written "Crohn disease": one extra key for a possessive
        for k in (key, key.replace("'s", "")) if "'s" in key else (key,):
            old = best.get(k)
            if old is None or prio < old[0]:
                best[k] = (prio, Entry(label, term.concept, term.source, case))
    return {k: e for k, (_, e) in best.items()}


# --- build + cache --------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$DISTILL_CACHE_DIR`` or the user cache dir (XDG), never inside the checkout."""
    env = os.environ.get("DISTILL_CACHE_DIR")
    if env:
        return Path(env) / "lexicons"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clinical-distill" / "lexicons"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# The compile code this process runs, hashed when it is imported: a process that imported an
# older version must not file its build under the fingerprint of the code now on disk.
_CODE_HASH = hashlib.sha256(b"".join(
    Path(m.__file__).read_bytes() for m in (sys.modules[__name__], sys.modules[Matcher.__module__])
)).hexdigest()


def fingerprint(sources: list[Source]) -> str:
    """Changes whenever a source file's bytes, the source set, or the compile code change."""
    h = hashlib.sha256(f"lexicon v{LEXICON_VERSION} code {_CODE_HASH}".encode())
    for f in [VENDORED["stopwords"], VENDORED["modifiers"]] + [f for s in sources for f in s.files]:
        h.update(f"{f.name}:{_sha256(f)}".encode())
    h.update(",".join(s.name for s in sources).encode())
    return h.hexdigest()[:20]


def load_modifiers(path: Path = VENDORED["modifiers"]) -> dict[str, str]:
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip() and not line.startswith("#"):
                word, _, kind = line.rstrip("\n").partition("\t")
                out[normalize(word)] = kind.strip()
    return out


def build_matcher(sources: list[Source]) -> Matcher:
    stop = load_stopwords()
    terms = (t for s in sources for t in s.terms())
    return Matcher.build(sorted(compile_entries(terms, stop).items()), load_modifiers())


def load_matcher(sources: list[Source], cache: bool = True) -> tuple[Matcher, dict]:
    """The compiled matcher for ``sources``, from the on-disk cache when it is current.

    Returns ``(matcher, info)`` where info says whether the cache was hit and where it lives.
    The cache is written atomically (temp file + rename) so a killed build leaves no bad file.
    """
    key = fingerprint(sources)
    path = cache_dir() / f"{'+'.join(s.name for s in sources)}-{key}.automaton"
    info = {"cache": str(path), "hit": False, "sources": [s.name for s in sources]}
    if cache and path.exists():
        try:
            matcher = Matcher.load(str(path), load_modifiers())
            info["hit"] = True
            return matcher, info
        except Exception:  # a truncated or foreign file: rebuild it below
            path.unlink(missing_ok=True)
    matcher = build_matcher(sources)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f"{path.name.rsplit('-', 1)[0]}-*.automaton*"):
            stale.unlink(missing_ok=True)  # older builds of the same configuration
        tmp = str(path) + f".tmp{os.getpid()}"
        matcher.save(tmp)
        os.replace(tmp + ".entries", str(path) + ".entries")
        os.replace(tmp, path)  # the automaton last: its presence marks a complete cache entry
    return matcher, info
