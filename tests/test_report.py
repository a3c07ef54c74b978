"""distill report: the three artefacts from a small real run; the HTML must open offline."""
from __future__ import annotations

import base64
import html
import json
import re

import pytest

from distill.report import ReportError, _times, load_results, ratios, write_report
from tests.test_bench import small_run  # noqa: F401 - session fixture: one small benchmark run
from tests.test_export import exported  # noqa: F401


def test_report_writes_md_html_png_and_json(small_run, tmp_path):  # noqa: F811
    results = small_run[0]
    paths = write_report(results, tmp_path, reference="openai:gpt-4o-mini")
    md = paths["md"].read_text()
    page = paths["html"].read_text()
    data = json.loads(paths["json"].read_text())
    for r in results["systems"]:
        assert r["name"] in md and r["name"] in page
    assert "| System |" in md and "vs openai:gpt-4o-mini" in md
    for name in ("f1_vs_cost", "throughput", "f1_per_label"):
        png = tmp_path / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"plots/{name}.png" in md
    # offline: plots embedded, nothing fetched from anywhere
    images = re.findall(r'<img alt="(\w+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert sorted(n for n, _ in images) == ["f1_per_label", "f1_vs_cost", "throughput"]
    assert all(base64.b64decode(b)[:4] == b"\x89PNG" for _, b in images)
    assert not re.search(r"<script|<link|@import|url\(|src=\"http|href=\"http", page, re.I)
    # every number is in results.json, plus the comparison against the reference
    assert data["report"]["reference"] == "openai:gpt-4o-mini" and data["report"]["gold"] == "maccrobat-dev3"
    assert [r["name"] for r in data["systems"]] == [r["name"] for r in results["systems"]]
    ratio = data["report"]["ratios"]["tiny (ONNX int8)"]
    rows = {r["name"]: r for r in results["systems"]}
    assert ratio["speed_factor"] == pytest.approx(
        rows["tiny (ONNX int8)"]["speed"]["notes_per_s"] / rows["openai:gpt-4o-mini"]["speed"]["notes_per_s"])
    assert ratio["summary"] in md


def test_ratio_wording():
    assert _times(12.4, "faster", "slower") == "12x faster"
    assert _times(101.2, "cheaper", "more expensive") == "101x cheaper"
    assert _times(0.25, "faster", "slower") == "4.0x slower"
    assert _times(1.02, "faster", "slower") == "same"
    assert _times(None, "faster", "slower") == "n/a"


def test_reference_defaults_to_the_first_teacher_and_unknowns_fail(small_run, tmp_path):  # noqa: F811
    results = small_run[0]
    rel = ratios(results, "ontology:open", "maccrobat-dev3")
    assert rel["ontology:open"]["speed_factor"] == pytest.approx(1.0)
    paths = write_report(results, tmp_path)
    assert json.loads(paths["json"].read_text())["report"]["reference"] == "ontology:open"
    with pytest.raises(ReportError, match="not a benchmarked system"):
        write_report(results, tmp_path, reference="gpt-5")
    with pytest.raises(ReportError, match="was not scored"):
        write_report(results, tmp_path, gold="ncbi")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ReportError, match="invalid JSON"):
        load_results(tmp_path / "bad.json")


def test_cli_report_renders_from_results_json(small_run, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from distill.cli import app

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(small_run[0], default=str))
    res = CliRunner().invoke(app, ["report", "--results", str(tmp_path / "run"), "--reference", "ontology:open"])
    assert res.exit_code == 0, res.output
    for name in ("report.md", "report.html", "results.json"):
        assert (tmp_path / "run" / name).is_file()
    res = CliRunner().invoke(app, ["report", "--results", str(tmp_path / "run"), "--reference", "nobody"])
    assert res.exit_code == 2 and "not a benchmarked system" in res.output


def _f1(f1: float, notes: int) -> dict:
    micro = {"f1": f1, "precision": f1, "recall": f1, "f1_ci": [f1 - 0.05, f1 + 0.05]}
    return {"maccrobat:test": {m: {"micro": micro, "macro_f1": f1, "labels": {}, "documents": notes, "problems": []}
                               for m in ("exact", "relaxed")}}


def _row(name: str, kind: str, notes: int, seconds: float, f1: float, group: str | None = None, **extra) -> dict:
    from distill.cost import machine, machine_cost_per_1k

    speed = {"notes": notes, "seconds": seconds, "notes_per_s": notes / seconds, "notes_per_cpu_s": None,
             "tokens_per_s": 100 * notes / seconds, "latency_ms": None}
    return {"name": name, "kind": kind, "group": group or name, "device": "cpu", "billing": "machine", "meta": {},
            "size_bytes": None, "speed": speed, "memory": {"rss_mb": 10.0},
            "cost": machine_cost_per_1k(seconds, notes, machine(None)), "f1": _f1(f1, notes), **extra}


def test_llm_teacher_row_priced_rows_and_headline_in_the_papers_form(tmp_path):
    """An LLM teacher measured on 2 of 5 notes, the API models priced from its ledger and a student:
    the table shows its notes, seconds and cost, the headline compares the student with the
    strongest and the most expensive teacher and the priced models, every figure from the dict."""
    from distill.bench import priced_rows
    from distill.report import _sig, _usd, versus

    llm = _row("local:qwen2.5-coder-1.5b", "teacher", 2, 90.0, 0.31,
               usage={"input_tokens": 3000, "output_tokens": 700, "cached_requests": 0})
    onto = _row("ontology:open", "teacher", 5, 0.02, 0.67)
    student = _row("student (ONNX int8)", "student-onnx-int8", 5, 0.5, 0.60, group="student")
    torch_row = _row("student (torch)", "student-torch", 5, 0.8, 0.60, group="student")
    priced = priced_rows(llm, ["gpt-4o-mini", "gemini-2.0-flash"])
    results = {"systems": [onto, llm, *priced, torch_row, student], "config": {"labels": []},
               "documents": {"n": 5, "gold_sets": {"maccrobat:test": 5}}}
    paths = write_report(results, tmp_path)
    md, page = paths["md"].read_text(), paths["html"].read_text()
    data = json.loads(paths["json"].read_text())["report"]
    assert (data["strongest"], data["most_expensive"]) == ("ontology:open", llm["name"])
    assert data["students"] == ["student (ONNX int8)"]  # the deployed variant, not the torch one

    table = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in md.splitlines() if line.startswith("| ")}
    head = table["System"]
    cell = lambda name, col: table[name][head.index(col)].strip(" |")  # noqa: E731
    assert cell(llm["name"], "notes") == "2" and cell(llm["name"], "s / note") == _sig(45.0)
    assert cell(llm["name"], "$ / 1k notes") == _usd(llm["cost"]["usd_per_1k_notes"])
    assert cell(llm["name"], "F1 relaxed [95% CI]").startswith("0.310")
    for row, model in zip(priced, ("gpt-4o-mini", "gemini-2.0-flash")):
        from teachers.cost import price_for

        p = price_for(model)
        expected = (3000 * p.input_per_1m + 700 * p.output_per_1m) / 1e6 / 2 * 1000
        assert row["name"] == f"{model} (priced, not run)" and row["cost"]["usd_per_1k_notes"] == pytest.approx(expected)
        assert cell(row["name"], "$ / 1k notes") == _usd(expected) and cell(row["name"], "notes/s") == "n/a"
        assert f"3000 input + 700 output tokens of {llm['name']}'s run" in md

    headline = next(line for line in md.splitlines() if line.startswith("- student (ONNX int8)"))
    vs_llm = versus(student, llm, "maccrobat:test")
    assert vs_llm["speed_factor"] == pytest.approx(student["speed"]["notes_per_s"] / llm["speed"]["notes_per_s"])
    assert vs_llm["cost_factor"] == pytest.approx(llm["cost"]["usd_per_1k_notes"] / student["cost"]["usd_per_1k_notes"])
    assert f"{vs_llm['summary']} than {llm['name']} (most expensive teacher, relaxed F1 0.310 on 2 notes)" in headline
    assert re.search(r"\d+x faster, \d+x cheaper than local:", headline)  # the paper's form
    assert "than ontology:open (strongest teacher, relaxed F1 0.670 on 5 notes)" in headline
    gemini = versus(student, priced[1], "maccrobat:test")["summary"]
    assert "faster" not in gemini and f"{gemini} than gemini-2.0-flash (priced from {llm['name']}" in headline
    assert html.escape(headline[2:]) in page
