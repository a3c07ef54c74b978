"""Matcher rules: word boundaries, longest match, overlaps, case-sensitive acronyms, folding."""
from __future__ import annotations

from ontologies.matcher import Entry, Matcher, fold, normalize


def m(*terms, modifiers=None) -> Matcher:
    items = []
    for t in terms:
        term, label, *case = t
        items.append((normalize(term), Entry(label, f"C:{term}", "test", case[0] if case else None)))
    return Matcher.build(items, modifiers)


def spans(matcher, text):
    return [(text[x.start : x.end], x.label) for x in matcher.find(text)]


def test_whole_words_only():
    mm = m(("pain", "SYMPTOM"), ("aspirin", "MEDICATION"))
    assert spans(mm, "painful spain pain, aspirinate aspirin.") == [("pain", "SYMPTOM"), ("aspirin", "MEDICATION")]
    assert spans(mm, "pain") == [("pain", "SYMPTOM")]  # at both ends of the text


def test_longest_match_wins_and_no_overlaps():
    mm = m(("heart failure", "DISEASE"), ("congestive heart failure", "DISEASE"), ("failure", "SYMPTOM"),
           ("heart", "SYMPTOM"), ("failure to thrive", "SYMPTOM"))
    text = "congestive heart failure to thrive"
    got = mm.find(text)
    assert [(text[x.start:x.end]) for x in got] == ["congestive heart failure"]
    # overlapping candidates of equal length: the leftmost wins, the other is dropped
    mm2 = m(("a b", "SYMPTOM"), ("b c", "DISEASE"))
    assert spans(mm2, "x a b c") == [("a b", "SYMPTOM")]


def test_concept_ids_and_offsets():
    mm = m(("Crohn disease", "DISEASE"))
    text = "History of Crohn’s disease."
    assert mm.find(text) == []  # a possessive is another key (the lexicon adds both forms)
    mm = m(("Crohn's disease", "DISEASE"))
    (x,) = mm.find(text)
    assert (x.start, x.end, x.concept, x.term) == (11, 26, "C:Crohn's disease", "crohn's disease")
    assert text[x.start : x.end] == "Crohn’s disease"


def test_punctuation_blocks_matches_but_dashes_and_case_do_not():
    mm = m(("chest pain", "SYMPTOM"), ("non small cell lung cancer", "DISEASE"))
    assert spans(mm, "chest. pain") == []
    assert spans(mm, "Non-small-cell lung cancer") == [("Non-small-cell lung cancer", "DISEASE")]
    assert spans(mm, "CHEST PAIN") == [("CHEST PAIN", "SYMPTOM")]


def test_case_sensitive_acronyms():
    mm = m(("ALL", "DISEASE", "ALL"))
    assert spans(mm, "all patients with ALL") == [("ALL", "DISEASE")]


def test_plural_and_british_folding():
    mm = m(("renal cyst", "DISEASE"), ("ovary", "SYMPTOM"), ("edema", "SYMPTOM"), ("tumor", "SYMPTOM"), ("abscess", "DISEASE"))
    text = "renal cysts, ovaries, oedema, tumours, abscesses"
    assert [s for s, _ in spans(mm, text)] == ["renal cysts", "ovaries", "oedema", "tumours", "abscesses"]
    assert normalize("psoriasis status abscess") == "psoriasis status abscess"  # not plurals


def test_fold_keeps_offsets():
    for text in ["Oedema, ovaries & cysts—İstanbul’s “tumours”", "ABSCESSES\nof the Crohn's"]:
        assert len(fold(text)) == len(text)
    assert normalize("Crohn’s  Disease") == "crohn's disease"


def test_ignore_terms_claim_words_without_spans():
    mm = m(("blood pressure", "IGNORE"), ("pressure", "SYMPTOM"))
    assert spans(mm, "blood pressure and pressure") == [("pressure", "SYMPTOM")]


def test_head_word_trimming_keeps_label():
    mods = {"severe": "severity", "abdominal": "location", "acute": "course"}
    mm = m(("abdominal pain", "SYMPTOM"), ("pain", "SYMPTOM"), ("acute pancreatitis", "DISEASE"),
           ("pancreatitis", "DISEASE"), ("acute leukemia", "DISEASE"), ("abdominal hernia", "DISEASE"),
           ("hernia", "DISEASE"), modifiers=mods)
    assert spans(mm, "severe abdominal pain") == [("pain", "SYMPTOM")]
    assert spans(mm, "acute pancreatitis") == [("pancreatitis", "DISEASE")]
    assert spans(mm, "acute leukemia") == [("acute leukemia", "DISEASE")]  # no shorter term to fall back on
    assert spans(mm, "abdominal hernia") == [("abdominal hernia", "DISEASE")]  # location trims symptoms only


def test_empty_text_and_empty_lexicon():
    assert m(("pain", "SYMPTOM")).find("") == []
    assert Matcher.build([]).find("pain") == []


def test_save_and_load_roundtrip(tmp_path):
    mm = m(("chest pain", "SYMPTOM"), ("MS", "DISEASE", "MS"))
    path = str(tmp_path / "lex.automaton")
    mm.save(path)
    again = Matcher.load(path)
    text = "ms chest pain MS"
    assert again.find(text) == mm.find(text) and len(again) == 2
    assert again.lookup("chest pain").label == "SYMPTOM" and again.lookup("nope") is None


def test_abbreviations_defined_in_the_note_are_propagated():
    from ontologies.abbreviations import expand

    mm = m(("squamous cell carcinoma", "DISEASE"), ("tumors", "SYMPTOM"))
    text = ("A squamous cell carcinoma (SCC) was excised. The SCC recurred; scc is lower case. "
            "Response Evaluation Criteria In Solid Tumors (RECIST) showed RECIST progression.")
    got = [(text[x.start:x.end], x.label, x.concept) for x in expand(text, mm.find(text))]
    assert got[:3] == [("squamous cell carcinoma", "DISEASE", "C:squamous cell carcinoma"),
                       ("SCC", "DISEASE", "C:squamous cell carcinoma"), ("SCC", "DISEASE", "C:squamous cell carcinoma")]
    assert ("RECIST", "SYMPTOM", "C:tumors") not in got  # letters too far before the matched term
    assert [g[0] for g in got].count("SCC") == 2


def test_coordinated_terms_are_split_when_both_halves_are_terms():
    mm = m(("nausea and vomiting", "SYMPTOM"), ("nausea", "SYMPTOM"), ("vomiting", "SYMPTOM"),
           ("hand, foot and mouth disease", "DISEASE"), ("mouth disease", "DISEASE"))
    text = "Nausea and vomiting; hand, foot and mouth disease."
    assert spans(mm, text) == [("Nausea", "SYMPTOM"), ("vomiting", "SYMPTOM"), ("hand, foot and mouth disease", "DISEASE")]


def test_short_all_caps_word_is_an_abbreviation_unless_in_a_heading():
    mm = m(("pica", "SYMPTOM"), ("fever", "SYMPTOM"))
    assert spans(mm, "an infarct of the left PICA territory") == []
    assert spans(mm, "a child with pica and FEVER") == [("pica", "SYMPTOM")]
    assert spans(mm, "DIAGNOSES: FEVER, PICA.") == [("FEVER", "SYMPTOM"), ("PICA", "SYMPTOM")]


def test_folded_words_inside_multi_word_terms_and_crlf_breaks():
    """A British or plural word in the middle of a term, or a CRLF line break between its words,
    must not leave a gap the American / single-spaced key cannot match."""
    mm = m(("esophageal varices", "DISEASE"), ("hemolytic anemia", "DISEASE"), ("diabetes mellitus", "DISEASE"),
           ("chest pain", "SYMPTOM"))
    text = "Oesophageal varices; haemolytic anaemia; diabetes\r\nmellitus; chest\r\npain; chest.\r\npain"
    assert spans(mm, text) == [("Oesophageal varices", "DISEASE"), ("haemolytic anaemia", "DISEASE"),
                               ("diabetes\r\nmellitus", "DISEASE"), ("chest\r\npain", "SYMPTOM")]
    assert [x.term for x in mm.find("ovaries cysts diabetes mellitus")] == ["diabete mellitus"]
    assert spans(mm, "diabetes\x00mellitus") == [("diabetes\x00mellitus", "DISEASE")]  # a NUL is a separator


def test_an_acronyms_plural_matches_its_case_sensitive_entry():
    mm = m(("NSAID", "MEDICATION", "NSAID"), ("DVT", "DISEASE", "DVT"))
    assert spans(mm, "NSAIDs and nsaids; two DVTs, one DVT") == [("NSAIDs", "MEDICATION"), ("DVTs", "DISEASE"),
                                                                ("DVT", "DISEASE")]
