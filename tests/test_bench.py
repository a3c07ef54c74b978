"""distill.bench + distill.cost on a small real run: a dictionary teacher, an OpenAI teacher over
the loopback fake server (real SDK, real ledger), and a tiny student as torch / ONNX fp32 / int8.

Only the structure and the arithmetic are asserted here; speed targets live in
experiments/bench_runtime.py, never in unit tests.
"""
from __future__ import annotations

import os

import pytest

from distill.cost import CostError, MACHINES, Prices, api_cost_per_1k, machine, machine_cost_per_1k
from tests.fake_llm_servers import FakeOpenAIServer
from tests.test_export import exported  # noqa: F401 - session fixture shared with the other modules

TERMS = {"fever": "SYMPTOM", "aspirin": "MEDICATION", "pneumonia": "DISEASE", "pain": "SYMPTOM"}


@pytest.fixture(scope="session")
def small_run(request, exported, shared_data, tmp_path_factory):  # noqa: F811
    """One small benchmark, shared with test_report (kept on the pytest config)."""
    cached = getattr(request.config, "_distill_small_run", None)
    if cached is not None:
        return cached
    from distill.bench import BenchConfig, run_bench, student_systems, teacher_system
    from distill.corpora import load_corpus
    from teachers.openai import OpenAITeacher

    model, out, _ = exported
    docs = load_corpus("maccrobat", shared_data, split="dev")[:3]
    with FakeOpenAIServer(TERMS) as srv:
        llm = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=tmp_path_factory.mktemp("llm") / "c.sqlite")
        systems = [teacher_system("ontology:open"), teacher_system(llm)] + student_systems(model, name="tiny")
        cfg = BenchConfig(repeats=2, warmup_docs=1, latency_docs=2, bootstrap=100, progress=False)
        results = run_bench(systems, docs, {"maccrobat-dev3": docs}, cfg)
        results["_requests"] = len(srv.requests)
    cached = (results, docs, model, out)
    setattr(request.config, "_distill_small_run", cached)
    return cached


def test_every_system_gets_every_number(small_run):
    results, docs, _, _ = small_run
    rows = {r["name"]: r for r in results["systems"]}
    assert list(rows) == ["ontology:open", "openai:gpt-4o-mini", "tiny (torch)", "tiny (ONNX fp32)", "tiny (ONNX int8)"]
    assert results["documents"]["n"] == 3 and results["documents"]["token_unit"].startswith("sub-word")
    for r in rows.values():
        sp = r["speed"]
        assert sp["notes_per_s"] > 0 and len(sp["seconds_all"]) == (1 if r["billing"] == "api" else 2)
        assert sp["tokens_per_s"] == pytest.approx(results["documents"]["tokens"] / sp["seconds"])
        assert r["memory"]["rss_mb"] >= 0 and "psutil" in r["memory"]["method"]
        assert set(r["f1"]["maccrobat-dev3"]) == {"exact", "relaxed"}
        ci = r["f1"]["maccrobat-dev3"]["relaxed"]["micro"]["f1_ci"]
        assert ci[0] <= r["f1"]["maccrobat-dev3"]["relaxed"]["micro"]["f1"] <= ci[1]
    assert rows["openai:gpt-4o-mini"]["speed"]["latency_ms"] is None  # API calls are not latency-timed
    assert rows["tiny (torch)"]["speed"]["latency_ms"]["n"] == 2
    assert rows["tiny (torch)"]["size_bytes"] == (small_run[2] / "model.safetensors").stat().st_size
    assert rows["tiny (ONNX int8)"]["size_bytes"] == (small_run[3] / "model.int8.onnx").stat().st_size
    m = results["machine"]
    assert m["logical_cores"] == os.cpu_count() and m["cpu"] and m["memory_gib"] > 0


def test_same_predictions_give_same_f1_and_speedups_are_reported(small_run):
    results = small_run[0]
    rows = {r["name"]: r for r in results["systems"]}
    f1 = lambda n: rows[n]["f1"]["maccrobat-dev3"]["relaxed"]["micro"]  # noqa: E731
    assert f1("tiny (ONNX fp32)") == f1("tiny (torch)")
    assert f1("ontology:open")["f1"] > f1("tiny (torch)")["f1"]  # a real teacher beats random weights
    assert set(results["speedups"]["tiny"]) == {"student-onnx-fp32", "student-onnx-int8"}


def test_costs_follow_the_ledger_and_the_machine_price(small_run):
    results = small_run[0]
    rows = {r["name"]: r for r in results["systems"]}
    api = rows["openai:gpt-4o-mini"]
    assert api["billing"] == "api" and results["_requests"] > 0
    u = api["usage"]
    expected = (u["input_tokens"] * 0.15 + u["output_tokens"] * 0.60) / 1e6 / 3 * 1000
    assert u["input_tokens"] > 0 and api["cost"]["usd_per_1k_notes"] == pytest.approx(expected)
    assert api["cost"]["price_source"].startswith("https://openai.com")
    for name in ("ontology:open", "tiny (torch)", "tiny (ONNX int8)"):
        r = rows[name]
        assert r["billing"] == "machine" and r["cost"]["machine"] == "aws-m6i.large"
        assert r["cost"]["usd_per_1k_notes"] == pytest.approx(r["speed"]["seconds"] / 3600 * 0.096 / 3 * 1000)


def test_cost_model_units_and_errors():
    assert machine(None).key == "aws-m6i.large" and machine(None, gpu=True).gpu
    assert machine("0.5").hourly_usd == 0.5 and machine(2).hourly_usd == 2.0
    with pytest.raises(CostError, match="unknown machine"):
        machine("cray-1")
    with pytest.raises(CostError, match="negative"):
        machine(-1)
    assert all(m.source.startswith("https://") and m.checked for m in MACHINES.values())
    # 36 s for 100 notes on a $1/h machine: 0.01 $ per 100 notes -> 0.1 $ per 1k
    assert machine_cost_per_1k(36.0, 100, machine(1.0))["usd_per_1k_notes"] == pytest.approx(0.1)
    got = api_cost_per_1k("gpt-4o", 1_000_000, 100_000, 1000)
    assert got["usd_per_1k_notes"] == pytest.approx(2.50 + 1.00)
    assert api_cost_per_1k("gpt-4o", 1_000_000, 100_000, 1000, batch=True)["usd_per_1k_notes"] == pytest.approx(1.75)
    with pytest.raises(CostError, match="no price"):
        api_cost_per_1k("some-unlisted-model", 10, 10, 1)
    with pytest.raises(CostError, match="zero notes"):
        machine_cost_per_1k(1.0, 0, machine(None))
    p = Prices.from_options(cpu="aws-c6i.large", gpu="0.9", batch_api=True)
    assert p.for_device("cpu").hourly_usd == 0.085 and p.for_device("gpu").hourly_usd == 0.9 and p.batch_api


def test_bench_refuses_what_it_cannot_measure(exported):  # noqa: F811
    from distill.bench import BenchError, System, run_bench, student_systems
    from distill.documents import Document

    model = exported[0]
    systems = student_systems(model, variants=("onnx-fp32",))
    with pytest.raises(BenchError, match="no documents"):
        run_bench(systems, [], None)
    with pytest.raises(BenchError, match="unique"):
        run_bench(systems + systems, [Document("a", "fever")], None)
    broken = System("broken", "teacher", lambda: (_ for _ in ()).throw(OSError("lexicon missing")))
    with pytest.raises(BenchError, match="'broken' failed to load: lexicon missing"):
        run_bench([broken], [Document("a", "fever")], None)
    with pytest.raises(BenchError, match="not a student model directory"):
        student_systems(model / "onnx" / "nowhere")


def test_cli_bench_writes_results_and_report(tmp_path, exported):  # noqa: F811
    import json

    from typer.testing import CliRunner

    from distill.cli import app

    model = exported[0]
    gold = tmp_path / "gold.jsonl"
    text = "Aspirin was given for chest pain and fever."
    ents = [{"start": 0, "end": 7, "label": "MEDICATION", "text": "Aspirin"},
            {"start": 22, "end": 32, "label": "SYMPTOM", "text": "chest pain"}]
    gold.write_text("".join(json.dumps({"id": f"n{i}", "text": text, "entities": ents}) + "\n" for i in range(3)))
    out = tmp_path / "bench"
    res = CliRunner().invoke(app, ["bench", "--model", str(model), "--gold", str(gold), "--out", str(out),
                                   "--repeats", "1", "--warmup", "0", "--latency-docs", "1", "--cpu-hourly", "0.2"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert data["command"].startswith("distill bench") and len(data["systems"]) == 3
    assert all(r["cost"]["hourly_usd"] == 0.2 for r in data["systems"])
    assert (out / "report.html").is_file() and data["report"]["reference"] == "m (torch)"
    res = CliRunner().invoke(app, ["bench", "--gold", str(gold)])
    assert res.exit_code == 2 and "nothing to benchmark" in res.output


def test_cached_answers_are_never_benchmarked_as_free(shared_data, tmp_path):
    """A spec-built LLM teacher runs without a response cache; a teacher object that answers from
    its cache gets no cost (and the report says why) instead of $0 at cache speed."""
    from distill.bench import BenchConfig, run_bench, teacher_system
    from distill.corpora import load_corpus
    from distill.report import write_report
    from teachers.openai import OpenAITeacher

    docs = load_corpus("maccrobat", shared_data, split="dev")[:2]
    cfg = BenchConfig(repeats=1, warmup_docs=0, latency_docs=0, bootstrap=0, progress=False)
    with FakeOpenAIServer(TERMS) as srv:
        spec = teacher_system("openai:gpt-4o-mini", base_url=srv.base_url)
        assert spec.load().cache is None
        cached = OpenAITeacher("gpt-4o-mini", base_url=srv.base_url, cache=tmp_path / "c.sqlite")
        list(cached.label(docs))  # the answers are now in its cache
        for _ in range(2):  # a second bench of the spec teacher still sends (and bills) its requests
            row = run_bench([spec], docs, {}, cfg)["systems"][0]
            assert row["cost"]["usd_per_1k_notes"] > 0 and row["usage"]["requests"] > 0
        results = run_bench([teacher_system(cached)], docs, {}, cfg)
    cost = results["systems"][0]["cost"]
    assert cost["usd_per_1k_notes"] is None and "answered from its response cache" in cost["error"]
    import json

    (tmp_path / "results.json").write_text(json.dumps(results))
    report = write_report(tmp_path / "results.json", tmp_path / "report")
    assert "no cost — 2 of its requests were answered from its response cache" in report["md"].read_text()


def test_torch_cuda_devices_are_billed_at_the_gpu_price():
    p = Prices.from_options(cpu="0.1", gpu="2.0")
    assert p.for_device("cuda").hourly_usd == p.for_device("cuda:1").hourly_usd == p.for_device("gpu").hourly_usd == 2.0
    assert p.for_device("cpu").hourly_usd == 0.1


def test_single_pass_teacher_on_its_first_notes_priced_combined_and_reused(shared_data, tmp_path):
    """An LLM-style teacher timed once on the first 2 of 3 notes, priced as an API model from its
    ledger, combined with the dictionary through aggregation; a rerun reuses its record unloaded."""
    from distill.bench import BenchConfig, BenchError, Combination, System, run_bench, teacher_system
    from distill.corpora import load_corpus
    from teachers.cost import price_for

    docs = load_corpus("maccrobat", shared_data, split="dev")[:3]
    cfg = BenchConfig(repeats=2, warmup_docs=1, latency_docs=1, bootstrap=0, progress=False)
    record = tmp_path / "measured" / "llm.json"
    combo = Combination("combined", ("ontology:open", "openai:gpt-4o-mini"), "union")
    with FakeOpenAIServer(TERMS) as srv:
        llm = teacher_system("openai:gpt-4o-mini", base_url=srv.base_url, max_notes=2, record=record,
                             priced_as=("gemini-2.0-flash",))
        assert llm.single_pass and not teacher_system("ontology:open").single_pass
        res = run_bench([teacher_system("ontology:open"), llm], docs, {"dev": docs}, cfg, [combo])
        sent = len(srv.requests)
    rows = {r["name"]: r for r in res["systems"]}
    assert list(rows) == ["ontology:open", "openai:gpt-4o-mini", "gemini-2.0-flash (priced, not run)", "combined"]
    r = rows["openai:gpt-4o-mini"]
    assert r["speed"]["notes"] == 2 and len(r["speed"]["seconds_all"]) == 1 and r["speed"]["latency_ms"] is None
    assert r["f1"]["dev"]["relaxed"]["documents"] == 2 and rows["ontology:open"]["f1"]["dev"]["relaxed"]["documents"] == 3
    u, p = r["usage"], price_for("gemini-2.0-flash")
    priced = rows["gemini-2.0-flash (priced, not run)"]
    assert priced["cost"]["usd_per_1k_notes"] == pytest.approx(
        (u["input_tokens"] * p.input_per_1m + u["output_tokens"] * p.output_per_1m) / 1e6 / 2 * 1000)
    assert priced["speed"] is None and priced["f1"] == {} and priced["cost"]["tokens_from"] == "openai:gpt-4o-mini"
    c = rows["combined"]
    assert c["speed"]["notes"] == 2 and c["f1"]["dev"]["relaxed"]["documents"] == 2
    assert c["cost"]["usd_per_1k_notes"] == pytest.approx(
        r["cost"]["usd_per_1k_notes"] + rows["ontology:open"]["cost"]["usd_per_1k_notes"])
    per_note = r["speed"]["seconds"] / 2 + rows["ontology:open"]["speed"]["seconds"] / 3
    assert per_note * 2 <= c["speed"]["seconds"] < per_note * 2 + 1.0  # + the aggregation's own time
    assert record.is_file() and sent > 0

    def never() -> None:
        raise AssertionError("a recorded system must not be loaded again")

    again = System(llm.name, "teacher", never, billing="auto", group=llm.group, single_pass=True, max_notes=2,
                   record=record, record_key=llm.record_key)
    res2 = run_bench([teacher_system("ontology:open"), again], docs, {"dev": docs}, cfg)
    r2 = {x["name"]: x for x in res2["systems"]}["openai:gpt-4o-mini"]
    assert r2["measured"]["reused_from"] == str(record) and r2["speed"]["seconds"] == r["speed"]["seconds"]
    assert r2["f1"]["dev"] == r["f1"]["dev"] and r2["cost"] == r["cost"]
    other_notes = System(llm.name, "teacher", never, billing="auto", single_pass=True, max_notes=1, record=record,
                         record_key=llm.record_key)
    with pytest.raises(BenchError, match="failed to load"):  # other notes: the record does not match
        run_bench([other_notes], docs, {}, cfg)
    with pytest.raises(BenchError, match="not benchmarked teachers"):
        run_bench([teacher_system("ontology:open")], docs, {}, cfg, [Combination("c", ("ontology:open", "nobody"))])
