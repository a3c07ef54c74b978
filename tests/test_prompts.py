"""Prompts (zero-shot, retrieved few-shot, ontology hints, versions) and answer parsing."""
from __future__ import annotations

import json
from typing import Iterable, Iterator

import pytest

from distill.corpora import load_corpus
from distill.documents import Document, Span
from teachers.base import Usage
from teachers.llm import MalformedOutput, RepetitionGuard, parse_compact, parse_json
from teachers.prompts import GUIDELINES, ExamplePool, PromptBuilder, entity_schema

POOL = [
    Document("p1", "Asthma exacerbation treated with salbutamol inhaler and prednisolone.",
             layers={"gold": [Span(0, 6, "DISEASE", "Asthma"), Span(33, 43, "MEDICATION", "salbutamol"),
                              Span(56, 68, "MEDICATION", "prednisolone")]}),
    Document("p2", "Knee pain and swelling after a fall; ibuprofen given.",
             layers={"gold": [Span(0, 9, "SYMPTOM", "Knee pain"), Span(14, 22, "SYMPTOM", "swelling"),
                              Span(37, 46, "MEDICATION", "ibuprofen")]}),
    Document("p3", "Type 2 diabetes managed with metformin.",
             layers={"gold": [Span(0, 15, "DISEASE", "Type 2 diabetes"), Span(29, 38, "MEDICATION", "metformin")]}),
]


class TermTeacher:
    """A minimal dictionary annotator (a real Teacher) standing in for the ontology teacher."""

    name = "ontology:test"

    def __init__(self, terms: dict[str, str]):
        self.terms, self.usage = terms, Usage()

    def label(self, docs: Iterable[Document]) -> Iterator[list[Span]]:
        for d in docs:
            out = []
            for t, lab in self.terms.items():
                i = d.text.find(t)
                if i >= 0:
                    out.append(Span(i, i + len(t), lab, t))
            yield out


def test_zero_shot_has_guidelines_and_note():
    p = PromptBuilder().build("Patient has fever.")
    assert p.messages[0]["role"] == "system" and len(p.messages) == 2
    for lab, text in GUIDELINES.items():
        assert lab in p.system and text[:40] in p.system
    assert p.messages[-1]["content"] == "<note>\nPatient has fever.\n</note>"
    assert p.version.startswith("zeroshot-json-v1-")


def test_versions_differ_by_style_format_and_pool():
    pool = ExamplePool(POOL, max_chars=200)
    versions = {PromptBuilder().version, PromptBuilder(fmt="compact").version, PromptBuilder(pool=pool, k=2).version,
                PromptBuilder(hint_teacher=TermTeacher({})).version, PromptBuilder(pool=pool, k=1).version}
    assert len(versions) == 5
    assert PromptBuilder().version == PromptBuilder().version


def test_few_shot_retrieves_similar_examples_and_never_the_note_itself():
    pb = PromptBuilder(pool=ExamplePool(POOL, max_chars=200), k=1, fmt="compact")
    p = pb.build("Severe asthma; salbutamol nebuliser started.")
    assert "salbutamol inhaler" in p.messages[1]["content"]  # nearest example = the asthma passage
    assert p.messages[2] == {"role": "assistant", "content": "DISEASE: Asthma\nMEDICATION: salbutamol\nMEDICATION: prednisolone"}
    p2 = pb.build(POOL[0].text, doc_id="p1")
    assert POOL[0].text not in p2.messages[1]["content"]


def test_few_shot_pool_from_real_corpus(shared_data):
    pool = ExamplePool(load_corpus("maccrobat", shared_data, split="train"), max_chars=400)
    assert len(pool.examples) > 500
    for ex in pool.examples[:200]:
        assert len(ex.text) <= 400
        for s in ex.spans:
            assert ex.text[s.start : s.end] == s.text
    for target in pool.examples[::97][:5]:  # a passage's own first half retrieves that passage
        query = target.text[: len(target.text) // 2]
        assert pool.nearest(query, 3)[0] is target
        assert all(e.doc_id != target.doc_id for e in pool.nearest(query, 3, exclude_doc=target.doc_id))


def test_ontology_hints_listed_as_candidates():
    pb = PromptBuilder(hint_teacher=TermTeacher({"fever": "SYMPTOM", "aspirin": "MEDICATION", "gout": "DISEASE"}))
    user = pb.build("Fever treated with aspirin; fever persisted.").messages[-1]["content"]
    assert "Candidates: aspirin (MEDICATION)" in user and "gout" not in user
    assert "hints, not answers" in user


def test_json_schema_is_strict_compatible():
    s = entity_schema(context=True)
    item = s["properties"]["entities"]["items"]
    assert item["additionalProperties"] is False and set(item["required"]) == {"text", "label", "context"}


def test_compact_answers_are_shorter_than_json():
    spans = POOL[0].spans("gold")
    compact = PromptBuilder(fmt="compact").render_answer(POOL[0].text, spans)
    js = PromptBuilder().render_answer(POOL[0].text, spans)
    assert len(compact) < 0.6 * len(js)
    assert [e.text for e in parse_compact(compact, ["DISEASE", "MEDICATION"]).entities] == ["Asthma", "salbutamol", "prednisolone"]
    assert [e.text for e in parse_json(js, ["DISEASE", "MEDICATION"]).entities] == ["Asthma", "salbutamol", "prednisolone"]


LABELS = ["MEDICATION", "DISEASE", "SYMPTOM"]


def test_parse_json_repairs_fences_and_truncation():
    good = '```json\n{"entities": [{"text": "fever", "label": "symptom"}]}\n```'
    p = parse_json(good, LABELS)
    assert [(e.text, e.label) for e in p.entities] == [("fever", "SYMPTOM")] and not p.repaired
    cut = '{"entities": [{"text": "fever", "label": "SYMPTOM"}, {"text": "aspi'
    p = parse_json(cut, LABELS)
    assert [e.text for e in p.entities] == ["fever"] and p.repaired
    assert parse_json('{"entities": []}', LABELS).entities == []
    with pytest.raises(MalformedOutput):
        parse_json("I found fever and aspirin.", LABELS)
    with pytest.raises(MalformedOutput):
        parse_json('{"entities": [{"te', LABELS)


def test_parse_compact_tolerates_bullets_and_codes_and_flags_junk():
    p = parse_compact("- SYMPTOM: fever\n2. MEDICATIONS: aspirin\nM: ibuprofen\nwhatever\nNONE", LABELS)
    assert [(e.label, e.text) for e in p.entities] == [("SYMPTOM", "fever"), ("MEDICATION", "aspirin"), ("MEDICATION", "ibuprofen")]
    assert p.repaired
    assert parse_compact("NONE", LABELS).entities == []
    with pytest.raises(MalformedOutput):
        parse_compact("The note describes a patient.", LABELS)


def test_repetition_guard_stops_loops_and_recitation():
    g = RepetitionGuard("fever and cough")
    for _ in range(2):
        assert not g.feed("SYMPTOM: fever\n")
    assert g.feed("SYMPTOM: fever\n") and g.reason == "repetition"
    g = RepetitionGuard(None)
    assert g.feed("DISEASE: " + "ab ab " * 40) and g.reason == "repetition"
    g = RepetitionGuard("fever", max_unsupported=3)
    for i, line in enumerate(["DISEASE: asthma\n", "MEDICATION: salbutamol\n", json.dumps({"text": "gout"}) + "\n"]):
        g.feed(line)
    assert g.reason == "unsupported"
    g = RepetitionGuard("fever and cough")
    g.feed("SYMPTOM: fever\nSYMPTOM: cough\n")
    assert not g.should_stop()


def test_repetition_guard_stops_a_json_list_cycling_on_one_line():
    note = "Fever, cough and  Chest pain; aspirin was given."
    cycle = [{"text": "fever", "label": "SYMPTOM"}, {"text": "cough", "label": "SYMPTOM"},
             {"text": "chest pain", "label": "SYMPTOM"}, {"text": "aspirin", "label": "MEDICATION"}]
    g = RepetitionGuard(note)
    stream = '{"entities": [' + ", ".join(json.dumps(e) for e in cycle * 5)
    stopped_at = next((i for i in range(0, len(stream), 7) if g.feed(stream[i : i + 7])), None)
    assert g.reason == "repetition" and stopped_at is not None
    assert g.text.count('"fever"') == 3 and g.text.count('"aspirin"') == 2  # stopped at the third repeat
    once = RepetitionGuard(note)
    assert not once.feed('{"entities": [' + ", ".join(json.dumps(e) for e in cycle) + "]}")
    # the same string under two labels is not a loop, and case/spacing do not hide one
    g = RepetitionGuard(note)
    g.feed("SYMPTOM: chest pain\nDISEASE: Chest  pain\n")
    assert not g.should_stop()
    assert g.feed("SYMPTOM: CHEST PAIN\n") and g.reason == "repetition"


def test_hints_option_uses_the_real_ontology_teacher():
    from teachers.llm import build_prompts

    opts = build_prompts({"hints": "ontology:open", "fmt": "compact", "k": "2"})
    pb = opts["prompts"]
    assert pb.hint_teacher.name == "ontology:open" and "+hints" in pb.version and "k" not in opts
    user = pb.build("Patient with asthma was given salbutamol.").messages[-1]["content"]
    assert "asthma (DISEASE)" in user and "salbutamol (MEDICATION)" in user
