"""Corpus registry: every registered corpus loads from ../shared/data with the counts its
SOURCE.md states; splits are deterministic, disjoint and complete; errors name the path."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from distill.corpora import (
    ENV_DATA_DIR,
    REGISTRY,
    CorpusNotFound,
    UnknownCorpus,
    describe,
    hash_bucket,
    hash_split,
    load_corpus,
    parse_split,
)
from distill.documents import DISEASE, MEDICATION, SYMPTOM, label_counts
from distill.io.report import ReadReport


def test_registry_has_every_corpus_with_licence_and_label_map():
    assert set(REGISTRY) == {"maccrobat", "ncbi_disease", "bc5cdr", "chia", "ada", "mtsamples"}
    for spec in REGISTRY.values():
        assert spec.licence and spec.description
        assert spec.label_map is None or set(spec.label_map.values()) <= {MEDICATION, DISEASE, SYMPTOM}
    assert REGISTRY["mtsamples"].label_map is None
    assert REGISTRY["ncbi_disease"].official_splits and not REGISTRY["maccrobat"].official_splits


def test_maccrobat_splits(shared_data):
    full = load_corpus("maccrobat", shared_data)
    assert label_counts(full) == {SYMPTOM: 2417, DISEASE: 925, MEDICATION: 751}
    parts = {s: load_corpus("maccrobat", shared_data, s) for s in ("train", "dev", "test")}
    ids = {s: {d.id for d in docs} for s, docs in parts.items()}
    assert {s: len(v) for s, v in ids.items()} == {"train": 85, "dev": 30, "test": 25}
    assert not (ids["train"] & ids["dev"]) and not (ids["train"] & ids["test"]) and not (ids["dev"] & ids["test"])
    assert ids["train"] | ids["dev"] | ids["test"] == {d.id for d in full}
    assert all(hash_split(i) == s for s, v in ids.items() for i in v)
    assert {d.id for d in load_corpus("maccrobat", shared_data, "train+dev")} == ids["train"] | ids["dev"]
    assert [d.id for d in load_corpus("maccrobat", shared_data, "test")] == sorted(ids["test"])  # stable order


def test_hash_split_is_a_pure_function_of_the_id():
    # pinned values: changing the split rule must be a deliberate, documented change
    assert [hash_bucket(i) for i in ("15939911", "17803823", "NCT01352598")] == [2, 30, 63]
    assert [hash_split(i) for i in ("15939911", "NCT01352598")] == ["train", "dev"]
    counts = Counter(hash_split(str(i)) for i in range(10000))
    assert 0.57 < counts["train"] / 10000 < 0.63 and 0.17 < counts["dev"] / 10000 < 0.23


def test_parse_split():
    assert parse_split(None) == parse_split("all") == ("train", "dev", "test")
    assert parse_split("train+dev") == ("train", "dev") == parse_split(["train", "dev"])
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        parse_split("valid")


@pytest.mark.parametrize(
    "split, docs, counts",
    [("train", 592, {DISEASE: 5134}), ("dev", 100, {DISEASE: 787}), ("test", 100, {DISEASE: 960})],
)
def test_ncbi_official_splits(shared_data, split, docs, counts):
    report = ReadReport()
    got = load_corpus("ncbi_disease", shared_data, split, report=report)
    assert len(got) == docs and label_counts(got) == counts
    assert report.n_problems == (2 if split == "train" else 0)  # duplicate PMID + whitespace quirk, reported


def test_bc5cdr_test_and_train_plus_dev(shared_data):
    test = load_corpus("bc5cdr", shared_data, "test")
    assert label_counts(test) == {DISEASE: 4424, MEDICATION: 5385}
    trd = load_corpus("bc5cdr", shared_data, "train+dev")
    assert len(trd) == 1000 and label_counts(trd) == {DISEASE: 4182 + 4244, MEDICATION: 5203 + 5347}


def test_chia_registry_reports_its_mismatches_and_splits_by_trial(shared_data, caplog):
    report = ReadReport()
    docs = load_corpus("chia", shared_data, report=report)
    assert len(docs) == 2000
    # 5 of the corpus' 14 mismatching spans are a Condition or a Drug (all 14: test_io_brat)
    assert report.n_problems == 5 and report.problems["span text mismatch"] == 5
    assert "span text mismatch: 5" in caplog.text  # logged, not hidden
    mismatched = Counter(" Drug " in e and MEDICATION or DISEASE for e in report.examples["span text mismatch"])
    # SOURCE.md: Condition 12,039 / Drug 3,801 = kept + reported
    assert label_counts(docs) == {DISEASE: 12039 - mismatched[DISEASE], MEDICATION: 3801 - mismatched[MEDICATION]}
    assert REGISTRY["chia"].split_key("NCT01352598_inc") == "NCT01352598"
    by_trial: dict[str, set[str]] = {}
    for d in docs:
        by_trial.setdefault(d.id.split("_")[0], set()).add(hash_split(REGISTRY["chia"].split_key(d.id)))
    assert all(len(v) == 1 for v in by_trial.values())


def test_ada_counts(shared_data):
    report = ReadReport()
    docs = load_corpus("ada", shared_data, report=report)
    assert len(docs) == 53 and label_counts(docs) == {SYMPTOM: 3248, DISEASE: 347}
    assert report.dropped_types == Counter(factor=363, modifier=336)
    assert report.skipped_lines == Counter({"relation (has)": 2793, "relation (modifies)": 1009, "relation (causes)": 47})
    assert all(d.meta["url"] == d.id for d in docs)
    test_report = ReadReport()  # a split is counted as read, not the whole file
    test = load_corpus("ada", shared_data, split="test", report=test_report)
    assert test_report.documents == len(test) < 53 and sum(test_report.kept.values()) == sum(label_counts(test).values())


def test_mtsamples_unlabelled_with_meta(shared_data):
    docs = load_corpus("mtsamples", shared_data)
    assert len(docs) == 2376
    assert all(not d.layers for d in docs)
    assert {"sample_name", "specialties", "description", "urls"} <= set(docs[0].meta)
    assert len(load_corpus("mtsamples", shared_data, "test")) < 2376


def test_data_dir_from_env_and_clear_errors(shared_data, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    with pytest.raises(CorpusNotFound, match=r"--data-dir .*\$DISTILL_DATA_DIR"):
        load_corpus("maccrobat")
    monkeypatch.setenv(ENV_DATA_DIR, str(shared_data))
    assert len(load_corpus("maccrobat", split="dev")) == 30
    with pytest.raises(CorpusNotFound, match=f"expected {tmp_path / 'maccrobat2020' / 'brat'}"):
        load_corpus("maccrobat", tmp_path)
    with pytest.raises(CorpusNotFound, match="does not exist"):
        load_corpus("maccrobat", tmp_path / "nowhere")
    with pytest.raises(UnknownCorpus, match="neither a registered corpus"):
        load_corpus("i2b2", shared_data)


def test_plain_paths(tmp_path):
    jl = tmp_path / "preds.jsonl"
    jl.write_text(json.dumps({"id": "a", "text": "fever", "entities": [{"start": 0, "end": 5, "label": "SYMPTOM", "text": "fever"}]}) + "\n")
    assert label_counts(load_corpus(str(jl))) == {SYMPTOM: 1}
    report = ReadReport()
    mapped = load_corpus(str(jl), label_map={"SYMPTOM": "FINDING"}, report=report)
    assert label_counts(mapped) == {"FINDING": 1} and report.kept == Counter(FINDING=1)
    assert label_counts(load_corpus(str(jl), label_map={"Drug": MEDICATION})) == {}
    brat = tmp_path / "brat"
    brat.mkdir()
    (brat / "d.txt").write_text("aspirin")
    (brat / "d.ann").write_text("T1\tDrug 0 7\taspirin\n")
    assert label_counts(load_corpus(brat)) == {"Drug": 1}
    assert label_counts(load_corpus(brat, label_map={"Drug": MEDICATION})) == {MEDICATION: 1}
    assert label_counts(load_corpus("brat", data_dir=tmp_path)) == {"Drug": 1}  # relative to the data dir
    pt = tmp_path / "ncbi_like.txt"
    pt.write_text("7|t|Fever\n7|a|none\n7\t0\t5\tFever\tDiseaseClass\tD1\n")
    assert label_counts(load_corpus(pt)) == {"DiseaseClass": 1}
    odd = tmp_path / "notes.csv"
    odd.write_text("x")
    with pytest.raises(UnknownCorpus, match="cannot tell its format"):
        load_corpus(odd)


def test_describe(shared_data, tmp_path):
    text = describe(data_dir=shared_data)
    for name in REGISTRY:
        assert text.count(f"{name}: ") >= 1
    assert "present under" in text and "missing" not in text
    assert "Sign_symptom->SYMPTOM" in describe("maccrobat")
    assert "missing: maccrobat2020/brat" in describe("maccrobat", tmp_path)
    with pytest.raises(UnknownCorpus):
        describe("nope")


def test_only_the_requested_split_must_exist(shared_data, tmp_path):
    (tmp_path / "ncbi_disease").mkdir()
    (tmp_path / "ncbi_disease" / "NCBItestset_corpus.txt").write_bytes(
        (shared_data / "ncbi_disease" / "NCBItestset_corpus.txt").read_bytes()
    )
    assert len(load_corpus("ncbi_disease", tmp_path, "test")) == 100
    with pytest.raises(CorpusNotFound, match="NCBItrainset_corpus.txt"):
        load_corpus("ncbi_disease", tmp_path, "train+test")
