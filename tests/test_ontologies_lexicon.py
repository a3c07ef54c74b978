"""Lexicon compilation rules, named configurations, and the on-disk lexicon cache."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from distill.documents import DISEASE, MEDICATION, SYMPTOM
from ontologies.lexicon import (
    LexiconError, Term, compile_entries, keep_term, load_matcher, load_stopwords, sources_for,
)

RRF = Path(__file__).parent / "fixtures" / "rxnorm" / "RXNCONSO.RRF"
STOP = load_stopwords()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "lexicons"


def test_junk_filtering():
    assert keep_term(Term("Fig", MEDICATION, "x", "drugbank"), STOP) is None  # ordinary word
    assert keep_term(Term("Na", MEDICATION, "x", "drugbank"), STOP) is None  # too short
    assert keep_term(Term("BAL", MEDICATION, "x", "drugbank"), STOP) is None  # drug-list acronym
    assert keep_term(Term("(2S)-2-amino-3-methylbutanoic acid", MEDICATION, "x", "drugbank"), STOP) is None
    assert keep_term(Term("Abnormality of the liver", SYMPTOM, "x", "hpo"), STOP) is None
    assert keep_term(Term("MS", DISEASE, "x", "doid"), STOP) is None  # too short even as an acronym
    assert keep_term(Term("CADASIL", DISEASE, "x", "doid"), STOP) == ("cadasil", "CADASIL")  # case-sensitive
    assert keep_term(Term("Ibuprofen", MEDICATION, "x", "drugbank"), STOP) == ("ibuprofen", None)
    assert keep_term(Term("HIV", DISEASE, "x", "clinical"), STOP) == ("hiv", "HIV")


def test_conflicts_resolved_by_source_priority_and_sign_words():
    entries = compile_entries([
        Term("tumor", SYMPTOM, "HP:1", "hpo"), Term("tumor", DISEASE, "DOID:1", "doid"),
        Term("mass", DISEASE, "DOID:2", "doid"), Term("mass", SYMPTOM, "CLIN:mass", "clinical"),
        Term("hypokalemia", DISEASE, "DOID:3", "doid"), Term("leukemia", DISEASE, "DOID:4", "doid"),
        Term("creatinine", MEDICATION, "DB1", "drugbank"), Term("creatinine", "IGNORE", "CLIN:c", "clinical"),
    ], STOP)
    assert entries["tumor"].label == DISEASE and entries["tumor"].source == "doid"
    assert entries["mass"].label == SYMPTOM and entries["mass"].source == "clinical"
    assert entries["hypokalemia"].label == SYMPTOM  # a measured abnormality is a sign
    assert entries["leukemia"].label == DISEASE
    assert entries["creatinine"].label == "IGNORE"
    both = compile_entries([Term("Crohn's disease", DISEASE, "DOID:8778", "doid")], STOP)
    assert set(both) == {"crohn's disease", "crohn disease"}


def test_config_errors():
    with pytest.raises(LexiconError, match="unknown lexicon part 'umls'"):
        sources_for("open+umls")
    with pytest.raises(LexiconError, match="needs rxnorm="):
        sources_for("rxnorm")
    with pytest.raises(LexiconError, match="RxNorm file not found"):
        sources_for("rxnorm", rxnorm="/nonexistent/RXNCONSO.RRF")
    with pytest.raises(LexiconError, match="needs snomed="):
        sources_for("open+snomed")
    assert [s.name for s in sources_for("open")] == ["doid", "symp", "hpo", "drugbank", "fda", "clinical"]
    assert [s.name for s in sources_for("symp+open")][:2] == ["symp", "doid"]  # no duplicates


def test_rxnorm_config_from_rrf_and_cache(cache, tmp_path):
    rrf = tmp_path / "RXNCONSO.RRF"
    shutil.copy(RRF, rrf)
    matcher, info = load_matcher(sources_for("rxnorm", rxnorm=rrf))
    assert not info["hit"] and Path(info["cache"]).exists()
    text = "Took Advil and metformin, not aspirina."
    found = [(text[x.start:x.end], x.label, x.concept) for x in matcher.find(text)]
    assert found == [("Advil", MEDICATION, "RXNORM:153010"), ("metformin", MEDICATION, "RXNORM:6809")]
    again, info2 = load_matcher(sources_for("rxnorm", rxnorm=rrf))
    assert info2["hit"] and again.find(text) == matcher.find(text)
    # a changed release file is a different lexicon: rebuilt, and the stale build is removed
    rrf.write_text(RRF.read_text() + "2670|ENG||||||9|9|2670||RXNORM|IN|2670|codeine||N|4096|\n")
    third, info3 = load_matcher(sources_for("rxnorm", rxnorm=rrf))
    assert not info3["hit"] and third.lookup("codeine").concept == "RXNORM:2670"
    assert len(list(cache.glob("*.automaton"))) == 1


def test_corrupt_cache_is_rebuilt(cache):
    _, info = load_matcher(sources_for("symp"))
    Path(info["cache"]).write_bytes(b"garbage")
    matcher, info2 = load_matcher(sources_for("symp"))
    assert not info2["hit"] and matcher.lookup("fever").label == SYMPTOM


def test_rxnorm_druglist_config(shared_data, cache):
    path = shared_data / "lexicons/rxnorm_druglist_medextractr/rxnorm_druglist.txt.gz"
    matcher, _ = load_matcher(sources_for("rxnorm", rxnorm=path), cache=False)
    text = "started on Lantus and lapatinib"
    assert [text[x.start:x.end] for x in matcher.find(text)] == ["Lantus", "lapatinib"]


def test_snomed_config_from_rf2_fixture(shared_data, cache):
    root = shared_data / "lexicons/snomed_rf2_format_fixture/SnomedCT_MiniRF2"
    matcher, _ = load_matcher(sources_for("snomed", snomed=root), cache=False)
    text = "A disorder of endocrine system was found."
    (x,) = matcher.find(text)
    assert (text[x.start:x.end], x.label, x.concept) == ("disorder of endocrine system", DISEASE, "SCTID:362969004")
