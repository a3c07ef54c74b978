"""Each ontology loader on the real release files in ../shared and on the project's RRF fixture."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from distill.documents import DISEASE, MEDICATION, SYMPTOM
from ontologies.drugbank import read_drugbank_vocabulary
from ontologies.drugsatfda import read_products
from ontologies.obo import OboFormatError, read_obo
from ontologies.rxnorm import RrfFormatError, read_druglist, read_rxnconso
from ontologies.snomed import Rf2FormatError, Rf2Snapshot, semantic_tag

FIXTURES = Path(__file__).parent / "fixtures"
RRF = FIXTURES / "rxnorm" / "RXNCONSO.RRF"


def test_doid_obo_real_release(shared_data):
    terms = {t.id: t for t in read_obo(shared_data / "lexicons/disease_ontology/doid_2024-01-31.obo.gz")}
    # SOURCE.md: 13,982 stanzas, 2,481 obsolete
    assert len(terms) == 13982 - 2481
    t = terms["DOID:0001816"]
    assert t.name == "angiosarcoma" and ("hemangiosarcoma", "EXACT") in t.synonyms and t.is_a == ["DOID:175"]
    assert not any(t.obsolete for t in terms.values())
    assert len(list(read_obo(shared_data / "lexicons/disease_ontology/doid_2024-01-31.obo.gz", keep_obsolete=True))) == 13982


def test_symp_and_hpo_obo(shared_data):
    symp = {t.name: t for t in read_obo(shared_data / "lexicons/symptom_ontology/symp.obo")}
    assert len(symp) == 1020 - 125 and "fever" in symp and "cough" in symp
    hpo = {t.id: t for t in read_obo(shared_data / "lexicons/hpo/hp_2017-04-13.obo.gz")}
    assert len(hpo) == 12358 - 132
    assert hpo["HP:0001945"].name == "Fever"
    # only EXACT synonyms become names by default
    t = next(t for t in hpo.values() if any(s for s, sc in t.synonyms if sc == "RELATED"))
    related = [s for s, sc in t.synonyms if sc == "RELATED"]
    assert not set(related) & set(t.names()) - {t.name}


def test_obo_malformed_synonym_names_line(tmp_path):
    p = tmp_path / "bad.obo"
    p.write_text('format-version: 1.2\n\n[Term]\nid: X:1\nname: x\nsynonym: unquoted EXACT []\n')
    with pytest.raises(OboFormatError, match="bad.obo:6"):
        list(read_obo(p))


def test_drugbank_vocabulary(shared_data):
    drugs = list(read_drugbank_vocabulary(shared_data / "lexicons/drugbank_open_vocabulary/drugbank_vocabulary.csv.gz"))
    assert len(drugs) == 17430
    cetux = next(d for d in drugs if d.id == "DB00002")
    assert cetux.name == "Cetuximab" and "Cetuximabum" in cetux.synonyms
    assert sum(len(d.synonyms) for d in drugs) == 39982


def test_drugbank_rejects_other_csv(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="not a DrugBank vocabulary"):
        list(read_drugbank_vocabulary(p))


def test_drugsatfda_products(shared_data):
    rows = list(read_products(shared_data / "lexicons/drugsatfda/Products.txt.gz"))
    assert len(rows) == 37307
    # SOURCE.md counts 7,088 raw distinct names; 20 of them differ only by trailing spaces
    assert len({r.drug_name for r in rows}) == 7068
    assert all(r.drug_name == r.drug_name.strip() for r in rows)
    combo = next(r for r in rows if len(r.active_ingredients) > 1)
    assert all(";" not in i for i in combo.active_ingredients)


def test_rxnconso_reader_keeps_rxnorm_names_and_drops_suppressed():
    atoms = list(read_rxnconso(RRF))
    names = {a.name for a in atoms}
    assert {"ibuprofen", "Advil", "acetaminophen", "Tylenol", "ibuprofen 200 MG Oral Tablet", "ibuprofen lysine"} <= names
    assert "Acetaminophen" not in names  # SAB=MSH
    assert "ibuprofen 200 MG Oral Capsule" not in names  # SUPPRESS=O
    assert "ASA (withdrawn)" not in names  # SUPPRESS=E
    assert "aspirina" not in names  # LAT=SPA
    assert "Oral Tablet" not in names and "ibuprofen 200 MG" not in names  # DF, SCDC
    advil = next(a for a in atoms if a.name == "Advil")
    assert (advil.rxcui, advil.tty, advil.concept) == ("153010", "BN", "RXNORM:153010")
    every_tty = {a.tty for a in read_rxnconso(RRF, sabs=None, ttys=None)}
    assert {"MH", "DF", "SCDC"} <= every_tty


def test_rxnconso_gz_and_crlf(tmp_path):
    p = tmp_path / "RXNCONSO.RRF.gz"
    with gzip.open(p, "wt", newline="") as fh:
        fh.write(RRF.read_text().replace("\n", "\r\n"))
    assert [a.name for a in read_rxnconso(p)] == [a.name for a in read_rxnconso(RRF)]


def test_rxnconso_wrong_column_count_is_an_error(tmp_path):
    p = tmp_path / "RXNCONSO.RRF"
    p.write_text("5640|ENG|RXNORM|IN|ibuprofen|N|\n")
    with pytest.raises(RrfFormatError, match="RXNCONSO.RRF:1: expected 18"):
        list(read_rxnconso(p))


def test_rxnorm_druglist(shared_data):
    names = list(read_druglist(shared_data / "lexicons/rxnorm_druglist_medextractr/rxnorm_druglist.txt.gz"))
    assert len(names) == 59320
    assert names[0] == "A & D" and "Lantus Solostar Pen" in names


def test_snomed_rf2_snapshot(shared_data):
    root = shared_data / "lexicons/snomed_rf2_format_fixture/SnomedCT_MiniRF2"
    s = Rf2Snapshot(root)
    assert "362969004" in s.concepts
    assert s.fsn("362969004") == "Disorder of endocrine system (disorder)"
    assert s.label("362969004") == DISEASE and s.label("404684003") == SYMPTOM
    assert s.label("113331007") is None  # body structure
    assert s.ancestors("362969004") == {"404684003", "138875005"}
    terms = set(s.terms())
    assert ("Disorder of endocrine system", DISEASE, "SCTID:362969004") in terms
    assert ("Clinical finding", SYMPTOM, "SCTID:404684003") in terms
    # a synonym of a concept without an FSN in this snapshot has no semantic tag: not labelled
    assert not any(t == "Meningitis C vaccine" for t, _, _ in terms)
    base = Rf2Snapshot(shared_data / "lexicons/snomed_rf2_format_fixture/SnomedCT_MiniRF2_Base_snapshot")
    assert base.label("12481008") is None  # (procedure)


def test_snomed_folder_with_two_releases_is_an_error(shared_data):
    """The fixture holds two releases; their parent folder is ambiguous, so no silent pick."""
    parent = shared_data / "lexicons/snomed_rf2_format_fixture"
    with pytest.raises(Rf2FormatError, match=r"2 sct2_Concept_\*Snapshot\*\.txt files .*INT_20210131.*INT_20180731"
                                             r".*point at one release folder"):
        Rf2Snapshot(parent)


def test_snomed_semantic_tags_and_missing_release(tmp_path):
    assert semantic_tag("Paracetamol (substance)") == "substance"
    assert semantic_tag("no tag") is None
    with pytest.raises(Rf2FormatError, match="not found"):
        Rf2Snapshot(tmp_path / "nope")
    with pytest.raises(Rf2FormatError, match="sct2_Concept_"):
        Rf2Snapshot(tmp_path)


def test_snomed_inactive_rows_dropped(tmp_path):
    term = tmp_path / "Snapshot" / "Terminology"
    term.mkdir(parents=True)
    (term / "sct2_Concept_Snapshot_INT_1.txt").write_text(
        "id\teffectiveTime\tactive\tmoduleId\tdefinitionStatusId\r\n1\t2020\t1\tm\td\r\n2\t2020\t0\tm\td\r\n")
    (term / "sct2_Description_Snapshot-en_INT_1.txt").write_text(
        "id\teffectiveTime\tactive\tmoduleId\tconceptId\tlanguageCode\ttypeId\tterm\tcaseSignificanceId\r\n"
        "10\t2020\t1\tm\t1\ten\t900000000000003001\tAspirin (substance)\tc\r\n"
        "11\t2020\t0\tm\t1\ten\t900000000000013009\tOld name\tc\r\n"
        "12\t2020\t1\tm\t2\ten\t900000000000003001\tRetired (disorder)\tc\r\n")
    (term / "sct2_Relationship_Snapshot_INT_1.txt").write_text(
        "id\teffectiveTime\tactive\tmoduleId\tsourceId\tdestinationId\trelationshipGroup\ttypeId\tcharacteristicTypeId\tmodifierId\r\n")
    s = Rf2Snapshot(tmp_path)
    assert list(s.terms()) == [("Aspirin", MEDICATION, "SCTID:1")]
