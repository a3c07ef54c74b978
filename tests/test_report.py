"""distill report: the three artefacts from a small real run; the HTML must open offline."""
from __future__ import annotations

import base64
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
