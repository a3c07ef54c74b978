"""ConText assertion rules: each category, scope limits (terminators, window, sentences),
pseudo-triggers, and the Span field that carries the result."""
from __future__ import annotations

import re

import pytest

from distill.assertion import AssertionRuleError, ContextRules
from distill.documents import Span, SpanError


def statuses(text: str, terms: list[str], **kw) -> dict[str, str]:
    spans = [Span(m.start(), m.end(), "DISEASE", m.group()) for t in terms for m in re.finditer(re.escape(t), text)]
    return {s.text: s.assertion for s in ContextRules(**kw).assert_spans(text, spans)}


def test_each_category_and_present():
    text = ("Patient denies chest pain. History of asthma. Mother had breast cancer. Rule out pneumonia. "
            "Return if vomiting recurs. Fever since Monday.")
    assert statuses(text, ["chest pain", "asthma", "breast cancer", "pneumonia", "vomiting", "Fever"]) == {
        "chest pain": "absent", "asthma": "historical", "breast cancer": "family", "pneumonia": "possible",
        "vomiting": "hypothetical", "Fever": "present"}


def test_backward_triggers_and_a_trigger_inside_the_span():
    text = "Pulmonary embolism was ruled out. Her symptoms disappeared. No signs of endocarditis were seen."
    got = statuses(text, ["Pulmonary embolism", "symptoms", "No signs of endocarditis"])
    assert got == {"Pulmonary embolism": "absent", "symptoms": "absent", "No signs of endocarditis": "absent"}


def test_scope_ends_at_terminators_sentences_and_the_window():
    text = "No fever but severe headache. No rash. Cough present. No pain in the left lower quadrant of the abdomen after meals or nausea."
    got = statuses(text, ["fever", "headache", "rash", "Cough", "nausea"], window=6)
    assert got == {"fever": "absent", "headache": "present", "rash": "absent", "Cough": "present", "nausea": "present"}


def test_pseudo_triggers_do_not_negate():
    text = "No increase in edema. Gram negative bacteremia."
    assert statuses(text, ["edema", "bacteremia"]) == {"edema": "present", "bacteremia": "present"}


def test_negation_wins_over_family_and_history():
    assert statuses("No family history of diabetes.", ["diabetes"]) == {"diabetes": "absent"}


def test_bad_rules_and_spans_are_clear_errors():
    with pytest.raises(AssertionRuleError, match="window"):
        ContextRules(window=0)
    with pytest.raises(AssertionRuleError, match="unknown trigger categories"):
        ContextRules(triggers={"negated": {"forward": ("no",)}})
    with pytest.raises(AssertionRuleError, match="outside a text"):
        ContextRules().assert_spans("short", [Span(0, 10, "DISEASE", "x" * 10)])


def test_span_assertion_round_trips_and_rejects_unknown_values():
    s = Span(0, 4, "SYMPTOM", "pain", assertion="absent")
    assert s.to_dict()["assertion"] == "absent" and Span.from_dict(s.to_dict()).assertion == "absent"
    assert "assertion" not in Span(0, 4, "SYMPTOM", "pain").to_dict()
    with pytest.raises(SpanError, match="unknown assertion 'negated'"):
        Span.from_dict({"start": 0, "end": 4, "label": "SYMPTOM", "text": "pain", "assertion": "negated"})
