"""Benchmark results -> ``report.md``, a self-contained ``report.html``, PNG plots, ``results.json``.

The HTML must open on an air-gapped hospital workstation: no remote scripts, fonts or styles;
plots are embedded as base64 PNG. Comparisons are stated in the paper's form ("12x faster, 101x
cheaper than GPT-4o"): the headline sets each student (its deployed variant) against the strongest
and the most expensive measured teacher, and against API models priced from an LLM teacher's token
ledger ("priced, not run"); the table's last column is against one reference teacher. Every number
in the report is in results.json, which anyone can regenerate with the command recorded there.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402

PLOTS = ("f1_vs_cost", "throughput", "f1_per_label")


class ReportError(ValueError):
    """Results that cannot be reported (no systems, an unknown reference, a missing gold set)."""


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{p} not found: run `distill bench` first") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{p}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict) or not data.get("systems"):
        raise ReportError(f"{p} holds no benchmarked systems")
    return data


# --- numbers -> words --------------------------------------------------------------------------


def _sig(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "n/a"
    if x == 0:
        return "0"
    text = f"{x:.{digits}g}"
    return f"{x:,.0f}" if "e+" in text else text  # 999.6 rounds up to "1e+03": print 1,000


def _usd(x: float | None) -> str:
    return "n/a" if x is None else f"${_sig(x)}"


def _times(ratio: float | None, more: str, less: str) -> str:
    """``12x faster`` / ``3.1x slower``; ``same`` within 5%."""
    if ratio is None or ratio <= 0 or math.isinf(ratio) or math.isnan(ratio):
        return "n/a"
    if 0.95 <= ratio <= 1.05:
        return "same"
    r, word = (ratio, more) if ratio > 1 else (1 / ratio, less)
    return f"{r:,.0f}x {word}" if r >= 10 else f"{r:.1f}x {word}"


def _cost(row: Mapping[str, Any]) -> float | None:
    return (row.get("cost") or {}).get("usd_per_1k_notes")


def _micro(row: Mapping[str, Any], gold: str, match: str) -> dict[str, Any] | None:
    return ((row.get("f1") or {}).get(gold) or {}).get(match, {}).get("micro")


def pick_reference(results: Mapping[str, Any], reference: str | None) -> str:
    names = [r["name"] for r in results["systems"]]
    if reference:
        if reference not in names:
            raise ReportError(f"reference {reference!r} is not a benchmarked system; choose one of {names}")
        return reference
    teachers = [r["name"] for r in results["systems"] if r["kind"] == "teacher"]
    return teachers[0] if teachers else names[0]


def _rate(row: Mapping[str, Any]) -> float | None:
    return (row.get("speed") or {}).get("notes_per_s")


def versus(row: Mapping[str, Any], other: Mapping[str, Any], gold: str | None) -> dict[str, Any]:
    """``row`` against ``other``: speed and cost factors, the F1 difference, and the paper's wording."""
    rate, orate = _rate(row), _rate(other)
    speed = rate / orate if rate and orate else None
    c, oc = _cost(row), _cost(other)
    cheaper = oc / c if c and oc else None
    f1, of1 = (_micro(row, gold, "relaxed") if gold else None), (_micro(other, gold, "relaxed") if gold else None)
    priced = row.get("priced_only") or other.get("priced_only")  # a model that did not run has no speed
    words = [] if priced else [_times(speed, "faster", "slower")]
    words.append(_times(cheaper, "cheaper", "more expensive"))
    return {"speed_factor": speed, "cost_factor": cheaper,
            "relaxed_f1_delta": (f1["f1"] - of1["f1"]) if f1 and of1 else None, "summary": ", ".join(words)}


def ratios(results: Mapping[str, Any], reference: str, gold: str | None) -> dict[str, dict[str, Any]]:
    """Each system against the reference: speed and cost factors and the F1 difference."""
    rows = {r["name"]: r for r in results["systems"]}
    return {name: versus(r, rows[reference], gold) for name, r in rows.items()}


def _notes_of(row: Mapping[str, Any], gold: str | None) -> int | None:
    m = ((row.get("f1") or {}).get(gold) or {}).get("relaxed", {}) if gold else {}
    return m.get("documents") if m else None


DEPLOYED = ("student-onnx-int8", "student-onnx-fp32", "student-torch")  # what a student ships as, in preference order


def landmarks(results: Mapping[str, Any], gold: str | None) -> dict[str, Any]:
    """The teachers a student is measured against: the strongest (highest relaxed micro F1 on
    ``gold``) and the most expensive ($ per 1k notes) of the teachers that ran; the API models
    priced from a teacher's ledger; and each student group's deployed variant."""
    teachers = [r for r in results["systems"] if r["kind"] == "teacher" and not r.get("priced_only")]
    scored = [r for r in teachers if gold and _micro(r, gold, "relaxed")]
    costed = [r for r in teachers if _cost(r) is not None]
    students: dict[str, Mapping[str, Any]] = {}
    for kind in reversed(DEPLOYED):
        for r in results["systems"]:
            if r["kind"] == kind:
                students[r["group"] or r["name"]] = r
    return {
        "strongest": max(scored, key=lambda r: _micro(r, gold, "relaxed")["f1"])["name"] if scored else None,
        "most_expensive": max(costed, key=_cost)["name"] if costed else None,
        "priced": [r["name"] for r in results["systems"] if r.get("priced_only") and _cost(r) is not None],
        "students": [r["name"] for r in students.values()],
    }


# --- plots -------------------------------------------------------------------------------------


def _short(name: str, width: int = 34) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def plot_f1_vs_cost(results: Mapping[str, Any], gold: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = "osD^vP*Xh<>"
    for i, r in enumerate(results["systems"]):
        m, c = _micro(r, gold, "relaxed"), _cost(r)
        if not m or not c:
            continue
        lo, hi = m.get("f1_ci") or (m["f1"], m["f1"])
        ax.errorbar([c], [m["f1"]], yerr=[[m["f1"] - lo], [hi - m["f1"]]], fmt=markers[i % len(markers)],
                    capsize=3, label=_short(r["name"]))  # a legend, not annotations: close points overlap
    ax.legend(fontsize=7, loc="best")
    ax.set_xscale("log")
    ax.set_xlabel("$ per 1,000 notes (log scale)")
    ax.set_ylabel(f"relaxed micro F1 ({gold}, 95% CI)")
    ax.set_title("Quality vs cost")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_throughput(results: Mapping[str, Any], path: Path) -> Path:
    rows = [r for r in results["systems"] if _rate(r)]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
    vals = [r["speed"]["notes_per_s"] for r in rows]
    ax.barh([_short(r["name"]) for r in rows], vals, color=["#8c564b" if r["kind"] == "teacher" else "#1f77b4" for r in rows])
    for i, v in enumerate(vals):
        ax.text(v, i, f" {_sig(v)}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("notes per second (median pass)")
    if vals and min(vals) > 0 and max(vals) / min(vals) > 50:
        ax.set_xscale("log")
    ax.set_title("Throughput on the same notes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_f1_per_label(results: Mapping[str, Any], gold: str, labels: Sequence[str], path: Path) -> Path:
    rows = [r for r in results["systems"] if _micro(r, gold, "relaxed")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(rows))
    for i, r in enumerate(rows):
        scores = r["f1"][gold]["relaxed"]["labels"]
        xs, ys, lo, hi = [], [], [], []
        for j, lab in enumerate(labels):
            s = scores.get(lab)
            if not s:
                continue
            ci = s.get("f1_ci") or (s["f1"], s["f1"])
            xs.append(j + (i - (len(rows) - 1) / 2) * width)
            ys.append(s["f1"])
            lo.append(s["f1"] - ci[0])
            hi.append(ci[1] - s["f1"])
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=_short(r["name"]))
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"relaxed F1 ({gold}, 95% CI)")
    ax.set_title("F1 per label")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- tables ------------------------------------------------------------------------------------


def _ci(m: Mapping[str, Any] | None) -> str:
    if not m:
        return "n/a"
    ci = m.get("f1_ci")
    return f"{m['f1']:.3f} [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else f"{m['f1']:.3f}"


def table_rows(results: Mapping[str, Any], gold: str | None, labels: Sequence[str],
               rel: Mapping[str, Mapping[str, Any]], reference: str) -> tuple[list[str], list[list[str]]]:
    head = ["System", "Kind", "notes"]
    if gold:
        head += ["F1 relaxed [95% CI]", "F1 exact [95% CI]", *[f"{lab} F1 (relaxed)" for lab in labels]]
    head += ["notes/s", "s / note", "notes/CPU-s", "tokens/s", "latency p50 / p95 ms", "RSS MB", "size MB", "$ / 1k notes", f"vs {reference}"]
    body = []
    for r in results["systems"]:
        n = _notes_of(r, gold) or (r.get("speed") or {}).get("notes")
        cells = [r["name"], r["kind"], str(n) if n else "n/a"]
        if gold:
            cells += [_ci(_micro(r, gold, "relaxed")), _ci(_micro(r, gold, "exact"))]
            lab_scores = ((r.get("f1") or {}).get(gold) or {}).get("relaxed", {}).get("labels", {})
            cells += [f"{lab_scores[lab]['f1']:.3f}" if lab in lab_scores else "n/a" for lab in labels]
        speed = r.get("speed") or {}
        lat = speed.get("latency_ms")
        size = r.get("size_bytes")
        cells += [
            _sig(speed.get("notes_per_s")), _sig(speed["seconds"] / speed["notes"] if speed else None),
            _sig(speed.get("notes_per_cpu_s")), _sig(speed.get("tokens_per_s")),
            f"{_sig(lat['p50'], 2)} / {_sig(lat['p95'], 2)}" if lat else "n/a",
            _sig((r.get("memory") or {}).get("rss_mb")),
            _sig(size / 2**20) if size else "n/a",
            _usd(_cost(r)),
            "reference" if r["name"] == reference else rel[r["name"]]["summary"],
        ]
        body.append(cells)
    return head, body


def _md_table(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in body]
    return "\n".join(lines)


def _html_table(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _f1_words(row: Mapping[str, Any], gold: str | None) -> str:
    m = _micro(row, gold, "relaxed") if gold else None
    return f"relaxed F1 {m['f1']:.3f} on {_notes_of(row, gold)} notes" if m else "no F1"


def _headline(results: Mapping[str, Any], marks: Mapping[str, Any], gold: str | None) -> list[str]:
    """Per student: '<student> (F1): Nx faster, Mx cheaper than <teacher> (strongest teacher, F1) …'."""
    rows = {r["name"]: r for r in results["systems"]}
    lines = []
    roles: dict[str, list[str]] = {}
    for role, key in (("strongest teacher", "strongest"), ("most expensive teacher", "most_expensive")):
        if marks.get(key):
            roles.setdefault(marks[key], []).append(role)
    for name in marks.get("students", []):
        st = rows[name]
        parts = [f"{versus(st, rows[t], gold)['summary']} than {t} ({' and '.join(rs)}, {_f1_words(rows[t], gold)})"
                 for t, rs in roles.items()]
        parts += [f"{versus(st, rows[p], gold)['summary']} than {p.replace(' (priced, not run)', '')} (priced from "
                  f"{rows[p]['meta']['tokens_from']}'s token ledger, not run)" for p in marks.get("priced", [])]
        if parts:
            lines.append(f"{name} ({_f1_words(st, gold)}): " + "; ".join(parts))
    for group, sp in (results.get("speedups") or {}).items():
        for kind, x in sp.items():
            lines.append(f"{group}: {kind} runs at {x:.2f}x the notes/s of the torch student")
    return lines


def _notes(results: Mapping[str, Any]) -> list[str]:
    m = results.get("machine", {})
    docs = results.get("documents", {})
    cfg = results.get("config") or {}
    prices = cfg.get("prices") or {}
    out = [
        f"Measured {results.get('created', '?')} on {m.get('cpu', '?')} ({m.get('logical_cores', '?')} logical cores, "
        f"{m.get('memory_gib', '?')} GiB RAM, GPU: {', '.join(m.get('gpu') or []) or 'none'}); load average before "
        f"{m.get('load_average')}, after {results.get('load_average_after')}.",
        f"{docs.get('n', '?')} notes, {docs.get('tokens', '?')} {docs.get('token_unit', 'tokens')}; throughput is the "
        f"median of {cfg.get('repeats', '?')} passes, each run round-robin across systems in slices of "
        f"{cfg.get('slice_docs', '?')} notes, after {cfg.get('warmup_docs', '?')} warm-up notes (API teachers: one "
        f"pass); notes/CPU-s divides by process CPU time; latency is a single-note call.",
        "Memory: psutil RSS growth when loading the system plus the peak growth while it ran.",
    ]
    for dev in ("cpu", "gpu"):
        p = prices.get(dev)
        if p:
            out.append(f"Local systems on {dev.upper()} billed at {p['key']} ${p['hourly_usd']}/h ({p['description']}; "
                       f"{p['source']}; {p['checked']}).")
    apis = [r for r in results["systems"] if (r.get("cost") or {}).get("basis", "").startswith("api")]
    for r in apis:
        c = r["cost"]
        whose = (f" of {c['tokens_from']}'s run (counted by its own tokenizer, standing in for this model's)"
                 if c.get("tokens_from") else "")
        out.append(f"{r['name']}: {c['input_tokens']} input + {c['output_tokens']} output tokens{whose} at "
                   f"${c['input_per_1m']}/${c['output_per_1m']} per 1M ({c['price_source']}, effective "
                   f"{c['price_effective']}).")
    for r in results["systems"]:
        sp, meta = r.get("speed") or {}, r.get("meta") or {}
        if meta.get("members"):
            out.append(f"{r['name']}: {meta['method']} aggregation of {' + '.join(meta['members'])} on the "
                       f"{sp.get('notes')} notes all of them labelled; its seconds and $ per note are its members' "
                       f"sums plus {_sig(sp.get('aggregate_seconds'))} s of aggregation.")
        elif sp.get("notes") and sp.get("notes") != docs.get("n"):
            out.append(f"{r['name']}: timed in one pass on the first {sp['notes']} of the {docs.get('n')} notes "
                       f"and scored on those.")
        if (r.get("measured") or {}).get("reused_from"):
            m_ = r["measured"]
            out.append(f"{r['name']}: measured {m_['at']} (load average {m_.get('load_average')}), reused from "
                       f"{m_['reused_from']} (same notes and settings; delete it to measure again).")
    for r in results["systems"]:
        if (r.get("cost") or {}).get("error"):
            out.append(f"{r['name']}: no cost — {r['cost']['error']}.")
    if results.get("command"):
        out.append(f"Rerun: `{results['command']}`")
    return out


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,td:nth-child(2){text-align:left}img{max-width:100%;margin:1em 0}
code{background:#f6f6f6;padding:1px 4px}"""


def write_report(
    results: Mapping[str, Any] | str | os.PathLike,
    out_dir: str | os.PathLike,
    reference: str | None = None,
    gold: str | None = None,
    title: str = "clinical-distill benchmark",
) -> dict[str, Path]:
    """Write results.json, plots/*.png, report.md and report.html into ``out_dir``."""
    res = dict(load_results(results) if isinstance(results, (str, os.PathLike)) else results)
    if not res.get("systems"):
        raise ReportError("no benchmarked systems to report")
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    golds = list((res.get("documents") or {}).get("gold_sets") or {})
    if gold is not None and gold not in golds:
        raise ReportError(f"gold set {gold!r} was not scored; scored: {golds}")
    gold = gold or (golds[0] if golds else None)
    labels = list((res.get("config") or {}).get("labels") or [])
    ref = pick_reference(res, reference)
    rel = ratios(res, ref, gold)
    marks = landmarks(res, gold)
    res["report"] = {"reference": ref, "gold": gold, "ratios": rel, **marks}

    plots = {"throughput": plot_throughput(res, out / "plots" / "throughput.png")}
    if gold:
        plots["f1_vs_cost"] = plot_f1_vs_cost(res, gold, out / "plots" / "f1_vs_cost.png")
        plots["f1_per_label"] = plot_f1_per_label(res, gold, labels, out / "plots" / "f1_per_label.png")
    head, body = table_rows(res, gold, labels, rel, ref)
    headline = _headline(res, marks, gold)
    notes = _notes(res)

    md = [f"# {title}", ""]
    md += [f"- {h}" for h in headline] + [""]
    md += [_md_table(head, body), ""]
    for name in PLOTS:
        if name in plots:
            md.append(f"![{name}](plots/{plots[name].name})")
    md += ["", "## How these numbers were measured", ""] + [f"- {n}" for n in notes] + [""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")

    imgs = "".join(
        f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(plots[name].read_bytes()).decode()}">'
        for name in PLOTS if name in plots)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<ul>{''.join(f'<li>{html.escape(h)}</li>' for h in headline)}</ul>"
            f"{_html_table(head, body)}{imgs}<h2>How these numbers were measured</h2>"
            f"<ul>{''.join(f'<li>{html.escape(n)}</li>' for n in notes)}</ul></body></html>")
    (out / "report.html").write_text(page, encoding="utf-8")
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
    return {"md": out / "report.md", "html": out / "report.html", "json": out / "results.json",
            **{f"plot_{k}": v for k, v in plots.items()}}
