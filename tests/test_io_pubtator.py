"""PubTator reader against the real NCBI-disease and BC5CDR files, plus malformed hand-made input."""
from __future__ import annotations

from collections import Counter

import pytest

from distill.io.jsonl import FormatError
from distill.io.pubtator import read_pubtator
from distill.io.report import ReadReport

NCBI = {"train": "NCBItrainset_corpus.txt", "dev": "NCBIdevelopset_corpus.txt", "test": "NCBItestset_corpus.txt"}
CDR = {"train": "CDR_TrainingSet.PubTator.txt", "dev": "CDR_DevelopmentSet.PubTator.txt", "test": "CDR_TestSet.PubTator.txt"}


def _types(docs):
    return Counter(s.attributes["type"] for d in docs for s in d.spans("gold"))


# (docs, SpecificDisease, DiseaseClass, Modifier, CompositeMention) from ncbi_disease/SOURCE.md
NCBI_COUNTS = {"dev": (100, 412, 126, 214, 35), "test": (100, 555, 121, 264, 20)}


@pytest.mark.parametrize("split", ["dev", "test"])
def test_ncbi_counts(shared_data, split):
    report = ReadReport()
    docs = list(read_pubtator(shared_data / "ncbi_disease" / NCBI[split], report=report))
    n, spec, cls, mod, comp = NCBI_COUNTS[split]
    assert len(docs) == n
    assert _types(docs) == Counter(SpecificDisease=spec, DiseaseClass=cls, Modifier=mod, CompositeMention=comp)
    assert report.n_problems == 0
    if split == "test":
        assert spec + cls + mod + comp == 960


def test_ncbi_train_quirks_are_reported(shared_data):
    path = shared_data / "ncbi_disease" / NCBI["train"]
    report = ReadReport()
    docs = list(read_pubtator(path, report=report))
    # SOURCE.md: 593 blocks, 592 unique PMIDs, 5,145 mentions (the repeated block holds the rest)
    raw_mentions = sum(1 for line in path.read_text().splitlines() if line.count("\t") == 5)
    assert raw_mentions == 5145
    repeated = [line for line in path.read_text().splitlines() if line.startswith("8528200\t")]
    assert len(docs) == 592
    assert sum(report.kept.values()) == 5145 - len(repeated) // 2
    assert report.problems["duplicate document (identical, kept once)"] == 1
    assert "PMID 8528200" in report.examples["duplicate document (identical, kept once)"][0]
    # the trailing-spaces mention is kept with the document's own text, and reported
    kind = "mention column has extra whitespace (kept, text from the document)"
    assert report.problems[kind] == 1 and "711-761" in report.examples[kind][0]
    doc = next(d for d in docs if d.id == "10923035")
    s = next(s for s in doc.spans() if s.start == 711)
    assert s.text == 'generalized epilepsy and febrile seizures " plus "' and s.concept == "D004829+D003294"


@pytest.mark.parametrize(
    "split, chem, dis, cid", [("train", 5203, 4182, 1038), ("dev", 5347, 4244, 1012), ("test", 5385, 4424, 1066)]
)
def test_bc5cdr_counts_and_relations_counted(shared_data, split, chem, dis, cid):
    report = ReadReport()
    docs = list(read_pubtator(shared_data / "bc5cdr" / CDR[split], {"Chemical": "MEDICATION", "Disease": "DISEASE"}, report=report))
    assert len(docs) == 500
    assert report.kept == Counter(MEDICATION=chem, DISEASE=dis)
    assert report.skipped_lines == Counter({"relation (CID)": cid})
    assert report.n_problems == 0


def test_bc5cdr_text_is_title_space_abstract_and_composites(shared_data):
    path = shared_data / "bc5cdr" / CDR["test"]
    docs = {d.id: d for d in read_pubtator(path)}
    lines = path.read_text().splitlines()
    title = next(l for l in lines if l.startswith("23949582|t|")).split("|", 2)[2]
    abstract = next(l for l in lines if l.startswith("23949582|a|")).split("|", 2)[2]
    doc = docs["23949582"]
    assert doc.text == title + " " + abstract and doc.meta["title_length"] == len(title)
    s = next(s for s in doc.spans() if s.start == 297)
    assert (s.text, s.concept, s.attributes["composite"]) == ("hemorrhagic cystitis", "D006470|D003556", ["hemorrhagic", "cystitis"])
    # unnormalisable concept id is kept as written
    assert any(s.concept == "-1" for d in docs.values() for s in d.spans())


# --- hand-made files --------------------------------------------------------------------------

GOOD = "1|t|Fever case\n1|a|Patient had cough.\n1\t0\t5\tFever\tDisease\tD1\n1\t23\t28\tcough\tDisease\tD2\n1\tCID\tC1\tD1\n\n"


def _file(tmp_path, body, name="x.PubTator.txt"):
    p = tmp_path / name
    p.write_text(body)
    return p


def test_handmade_good_file(tmp_path):
    report = ReadReport()
    (doc,) = read_pubtator(_file(tmp_path, GOOD), report=report)
    assert doc.text == "Fever case Patient had cough."
    assert [(s.text, s.concept) for s in doc.spans()] == [("Fever", "D1"), ("cough", "D2")]
    assert report.skipped_lines["relation (CID)"] == 1


@pytest.mark.parametrize(
    "body, reason",
    [
        ("1|t|Fever\n1|a|x\n1\t0\t5\tFever\tDisease\n", "6 or 7 tab-separated columns"),
        ("1|t|Fever\n1|a|x\n1\t0\tfive\tFever\tDisease\tD1\n", "mention offsets must be non-negative integers"),
        ("1|t|Fever\n1|a|x\n1\t4O\t5\tFever\tDisease\tD1\n", "mention offsets must be non-negative integers, got '4O'"),
        ("1|t|Fever\n1|a|x\n1\t-1\t5\tFever\tDisease\tD1\n", "mention offsets must be non-negative integers, got '-1'"),
        ("1|t|Fever\n1|a|x\n1\tCID\tD1\n", "neither a mention line"),
        ("1|t|Fever\n1|a|x\n2\t0\t5\tFever\tDisease\tD1\n", "annotation for PMID 2 inside the block of 1"),
        ("1|t|Fever\n1|a|x\n1\t0\t50\tFever\tDisease\tD1\n", "out of range"),
        ("1|t|Fever\n1|a|x\n1\t0\t5\tFavor\tDisease\tD1\n", "says 'Favor' but the text there is 'Fever'"),
        ("1|t|Fever\n1\t0\t5\tFever\tDisease\tD1\n", "needs a title (|t|) and an abstract"),
        ("1|a|x\n", "must follow exactly one title line"),
        ("1\t0\t5\tFever\tDisease\tD1\n", "annotation line before any"),
        ("1|t|A\n1|a|b\n\n1|t|B\n1|a|b\n", "appears twice with different content"),
    ],
)
def test_malformed_pubtator(tmp_path, body, reason):
    path = _file(tmp_path, body)
    with pytest.raises(FormatError) as e:
        list(read_pubtator(path))
    assert reason in str(e.value) and f"{path}:" in str(e.value)


def test_mismatch_report_policy(tmp_path):
    body = "1|t|Fever\n1|a|x\n1\t0\t5\tFavor\tDisease\tD1\n1\t6\t7\tx\tDisease\tD2\n"
    report = ReadReport()
    (doc,) = read_pubtator(_file(tmp_path, body), on_mismatch="report", report=report)
    assert [s.text for s in doc.spans()] == ["x"]
    assert report.problems == Counter({"span text mismatch": 1})
    assert ":3:" in report.examples["span text mismatch"][0]


def test_label_map_drops_and_counts(tmp_path):
    report = ReadReport()
    body = "1|t|Fever aspirin\n1|a|x\n1\t0\t5\tFever\tDisease\tD1\n1\t6\t13\taspirin\tChemical\tC1\n"
    (doc,) = read_pubtator(_file(tmp_path, body), {"Disease": "DISEASE"}, report=report)
    assert [s.label for s in doc.spans()] == ["DISEASE"]
    assert report.dropped_types == Counter(Chemical=1)
