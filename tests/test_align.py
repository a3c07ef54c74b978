"""Alignment of LLM strings to offsets, overlap resolution and chunking."""
from __future__ import annotations

import pytest

from distill.corpora import load_corpus
from distill.documents import Span
from teachers.align import Entity, align, chunk_text, resolve_overlaps

TEXT = "Chest  pain on exertion; the chest pain was painful. Started aspirin. MS was ruled out, ms of text."


def spans_of(result):
    return [(s.start, s.end, s.label, s.text) for s in result.spans]


def test_exact_match_labels_every_occurrence_on_word_boundaries():
    r = align(TEXT, [Entity("pain", "SYMPTOM")])
    got = spans_of(r)
    assert [(a, b) for a, b, *_ in got] == [(7, 11), (35, 39)]  # not inside "painful"
    assert all(TEXT[a:b] == t for a, b, _, t in got) and r.exact == 1


def test_case_and_whitespace_normalised_occurrences_are_found():
    r = align(TEXT, [Entity("chest pain", "SYMPTOM")])
    assert [t for *_, t in spans_of(r)] == ["Chest  pain", "chest pain"]


def test_short_acronyms_are_not_case_folded():
    r = align(TEXT, [Entity("MS", "DISEASE")])
    assert [t for *_, t in spans_of(r)] == ["MS"]


def test_fuzzy_match_snaps_to_words_and_unknown_strings_are_reported():
    r = align(TEXT, [Entity("asprin", "MEDICATION"), Entity("metformin", "MEDICATION"), Entity("fever", "BOGUS")],
              labels=["MEDICATION", "SYMPTOM"])
    assert spans_of(r) == [(61, 68, "MEDICATION", "aspirin")] and r.fuzzy == 1
    assert [e.text for e in r.unaligned] == ["metformin", "fever"]  # not in text / label not allowed


def test_context_picks_the_matching_occurrence_and_offset_shifts():
    r = align(TEXT, [Entity("chest pain", "SYMPTOM", context="exertion; the")], offset=100)
    assert spans_of(r) == [(129, 139, "SYMPTOM", "chest pain")]


def test_resolve_overlaps_keeps_longest_and_drops_duplicates():
    a = Span(0, 10, "SYMPTOM", "chest pain")
    b = Span(6, 10, "SYMPTOM", "pain")
    c = Span(20, 27, "MEDICATION", "aspirin")
    assert resolve_overlaps([b, a, c, a, c]) == [a, c]


@pytest.mark.parametrize("max_chars,overlap", [(300, 60), (1000, 200), (120, 30)])
def test_chunks_cover_the_text_with_overlap(max_chars, overlap):
    text = " ".join(f"Sentence number {i} mentions fever and aspirin." for i in range(60))
    chunks = chunk_text(text, max_chars, overlap)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(text)
    for (a, b), (c, d) in zip(chunks, chunks[1:]):
        assert b - a <= max_chars and a < c <= b, "consecutive chunks must overlap or touch, and advance"
    assert all(b - a <= max_chars for a, b in chunks)


def test_chunk_text_rejects_bad_settings_and_keeps_short_text_whole():
    assert chunk_text("short", 100, 10) == [(0, 5)]
    with pytest.raises(ValueError):
        chunk_text("x" * 500, 100, 60)


def test_gold_strings_of_real_notes_align_back_to_gold_offsets(shared_data):
    """MACCROBAT dev notes: an oracle that returns the gold strings must get gold offsets back,
    also when the note is split into chunks and merged."""
    docs = load_corpus("maccrobat", shared_data, split="dev")[:10]
    total = found = 0
    for doc in docs:
        gold = {(s.start, s.end, s.label) for s in doc.spans("gold") if not s.fragments}
        merged = []
        for a, b in chunk_text(doc.text, 800, 150):
            piece = doc.text[a:b]
            ents = [Entity(s.text, s.label) for s in doc.spans("gold") if a <= s.start and s.end <= b and not s.fragments]
            r = align(piece, ents, offset=a)
            assert not r.unaligned
            merged.extend(r.spans)
        got = {(s.start, s.end, s.label) for s in resolve_overlaps(merged)}
        total += len(gold)
        found += len(gold & got)
        for s in resolve_overlaps(merged):
            assert doc.text[s.start : s.end] == s.text
    assert total > 200
    # every-occurrence labelling plus overlap resolution can differ from gold only where gold
    # itself nests or leaves a repeated string unlabelled
    assert found / total > 0.9
