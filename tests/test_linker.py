"""Concept linking of model spans: exact key by the matcher's fold, head word, other label,
fuzzy, nothing close enough; concept ids the lexicon lacks are errors."""
from __future__ import annotations

import pytest

from distill.documents import Span
from ontologies.linker import LinkError, Linker
from ontologies.matcher import Entry, Matcher, normalize


@pytest.fixture(scope="module")
def linker() -> Linker:
    items = [(normalize(t), Entry(label, cid, "test")) for t, label, cid in [
        ("diabetes mellitus", "DISEASE", "DOID:9351"), ("lung cancer", "DISEASE", "DOID:1324"),
        ("chest pain", "SYMPTOM", "SYMP:0000754"), ("hypertension", "SYMPTOM", "HP:0000822"),
        ("metformin", "MEDICATION", "DRUGBANK:DB00331"), ("creatinine", "IGNORE", "CLIN:creatinine"),
    ]]
    return Linker(Matcher.build(items, {"severe": "severity"}), cutoff=90)


def test_exact_head_other_label_and_fuzzy(linker):
    assert linker.link("Lung cancers", "DISEASE").method == "exact"
    head = linker.link("severe chest pain", "SYMPTOM")
    assert (head.concept, head.method) == ("SYMP:0000754", "head")
    assert linker.link("hypertension", "DISEASE").concept == "HP:0000822"  # filed under SYMPTOM
    fuzzy = linker.link("diabetis mellitus", "DISEASE")
    assert (fuzzy.concept, fuzzy.method) == ("DOID:9351", "fuzzy") and 90 <= fuzzy.score < 100
    assert linker.link("diabetis mellitus", "MEDICATION") is None  # fuzzy stays within the label
    assert linker.link("creatinine", "MEDICATION") is None  # analytes are no concepts
    assert linker.link("xyzzy", "DISEASE") is None and linker.link("...", "DISEASE") is None


def test_link_spans_fills_and_checks_concepts(linker):
    spans = [Span(0, 9, "MEDICATION", "metformin"), Span(10, 15, "DISEASE", "xyzzy"),
             Span(16, 26, "SYMPTOM", "chest pain", concept="SYMP:0000754")]
    out = linker.link_spans(spans)
    assert [s.concept for s in out] == ["DRUGBANK:DB00331", None, "SYMP:0000754"]
    with pytest.raises(LinkError, match="concept 'DOID:0' is not in the lexicon"):
        linker.link_spans([Span(0, 9, "DISEASE", "metformin", concept="DOID:0")])
    with pytest.raises(LinkError, match="cutoff"):
        Linker(linker.matcher, cutoff=0)


def test_the_open_lexicon_links_what_the_dictionary_teacher_finds():
    from teachers.ontology import OntologyTeacher

    text = "Type 2 diabetes mellitus treated with metformin; denies chest pain."
    teacher = OntologyTeacher("open")
    found = teacher.label_text(text)
    linker = Linker(teacher.matcher)
    assert found and [s.concept for s in linker.link_spans([s.with_concept(None) for s in found])] == [s.concept for s in found]
