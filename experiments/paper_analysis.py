"""The paper's tables and figures from run files only: Table 1, Figure 2a, Figure 2b, Table 3, and a summary.

    python experiments/paper_analysis.py --refine R.sqlite --norefine N.sqlite --baseline B.sqlite --out DIR

(``python experiments/paper.py analyze CONFIG`` calls this on an experiment's runs.) Everything is computed
from what ``ns-dspy explain`` stored; the only other thing read is the embedder named in the run's config,
for the embeddings of Figure 2b's conditions (the run stores their cluster labels, not their vectors).

* **Table 1** - per layer and method, the mean neuron-level Score (the polysemantic score on test; valid too)
  and Number (modes per neuron) over the neurons that finished, with standard errors, and the paired gain of
  refinement over the same neurons without it. NeuronScope and its ablation share decomposition and
  clustering in the paper; here they are separate runs, so the table counts the neurons whose conditions were
  identical in both (they are when the explainer LM's answers are cached, as DSPy does by default).
* **Figure 2a** - the mean over neurons of the best valid score after each refinement iteration, per layer.
* **Figure 2b** - PCA of one neuron's atomic-condition embeddings, coloured by the cluster it was given.
* **Table 3** - the single-pass baseline's description against NeuronScope's, side by side, with scores.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import random
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ns_dspy.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ns_dspy.config import OUR_LOGGERS, configure_logging
from ns_dspy.errors import ConfigError, NsDspyError
from ns_dspy.report.data import mean_trajectories, neuron_trajectory
from ns_dspy.report.html import PALETTE
from ns_dspy.runs import NeuronRecord
from ns_dspy.runs.read import RunData, read_run, statistical_row
from ns_dspy.trace import Statistical
from ns_dspy.types import UnitId

log = logging.getLogger("paper_analysis")

METHODS = {"norefine": "NeuronScope (w/o Refinement)", "refine": "NeuronScope", "baseline": "single-pass baseline",
           "stats": "statistical explainer (no LM)"}


# -- small statistics -------------------------------------------------------------------------------------------
def mean_se(values: Sequence[float]) -> tuple[float | None, float | None]:
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, None
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    return m, math.sqrt(var / len(values))


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pm(mean: float | None, se: float | None, digits: int = 3) -> str:
    return fmt(mean, digits) + ("" if se is None else f" ± {se:.{digits}f}")


def paired_text(diffs: Sequence[float], tol: float = 1e-9) -> str:
    """``mean ± SE (U up, D down)`` of paired differences; a neuron is up or down when it moved by more than
    ``tol``."""
    return f"{_pm(*mean_se(diffs))} ({sum(x > tol for x in diffs)} up, {sum(x < -tol for x in diffs)} down)"


def paired_rows(per: dict[str, dict], keys: Sequence[str], base: str, tol: float = 1e-3) -> list[str]:
    """Markdown rows ``| key | mean ± SE | paired - base | up / down |`` over ``per``'s neurons (``per[unit][key]``:
    a score), the first of ``keys`` being ``base``; a neuron is up or down when it moved by more than ``tol``."""
    out = []
    for k in keys:
        d = [p[k] - p[base] for p in per.values()]
        out.append(f"| {k} | {_pm(*mean_se([p[k] for p in per.values()]))} | "
                   + ("- | - |" if k == base else f"{_pm(*mean_se(d))} | {sum(x > tol for x in d)} / "
                                                  f"{sum(x < -tol for x in d)} |"))
    return out


def _csv(rows: list[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# -- Table 1 ------------------------------------------------------------------------------------------------------
def same_modes(a: NeuronRecord, b: NeuronRecord) -> bool:
    """Both runs decomposed and clustered this neuron identically (same conditions, same clusters; statistical
    word lists added as modes are not clusters)."""
    ta, tb = a.typed_trace, b.typed_trace
    clusters = lambda t: [m.members for m in t.modes if m.source == "lm"]  # noqa: E731
    return ta.conditions == tb.conditions and clusters(ta) == clusters(tb)


def _statistical_rows(runs: dict[str, RunData], layer: int | None) -> list[Statistical]:
    """The statistical explainer's scores stored in the traces of the first run (refine first) that has them, for
    one layer (None: every layer)."""
    for mode in ("refine", "norefine", "baseline"):
        if mode not in runs:
            continue
        rows = [row for r in runs[mode].records if layer is None or r.unit.layer == layer
                for row in [statistical_row(r)] if row is not None]
        if rows:
            return rows
    return []


ALL_LAYERS = "all"
"""Table 1's ``layer`` for the rows over every layer's neurons together (written when a run spans several layers)."""


def table1(runs: dict[str, RunData], model: str) -> dict:
    """Per layer and method the mean (± standard error) test and valid Score and Number, the statistical explainer's
    row beside them and the paired refinement gain; with several layers, the same over all of them (layer
    :data:`ALL_LAYERS`), which is what methods are compared on when a layer holds a few neurons."""
    layers = sorted({r.unit.layer for run in runs.values() for r in run.records})
    rows, gains = [], []
    for layer in [*layers, *([None] if len(layers) > 1 else [])]:
        here = (lambda unit: True) if layer is None else (lambda unit, layer=layer: unit.layer == layer)
        name = ALL_LAYERS if layer is None else layer
        for mode in ("norefine", "refine", "baseline"):
            if mode not in runs:
                continue
            records = [r for r in runs[mode].records if here(r.unit)]
            done = [r for r in records if r.status == "done"]
            test, test_se = mean_se([r.score_test for r in done])
            valid, valid_se = mean_se([r.score_valid for r in done])
            number, number_se = mean_se([r.number for r in done])
            tokens, _ = mean_se([r.lm_tokens or 0 for r in records])
            rows.append({"model": model, "layer": name, "mode": mode, "method": METHODS[mode],
                         "neurons": len(done), "failed": len(records) - len(done), "score_test": test,
                         "score_test_se": test_se, "score_valid": valid, "score_valid_se": valid_se,
                         "number": number, "number_se": number_se, "lm_tokens_per_neuron": tokens})
        stats = _statistical_rows(runs, layer)
        if stats:  # the no-LM explanation every run computes on the same neurons and data
            test, test_se = mean_se([s.test for s in stats])
            valid, valid_se = mean_se([s.valid for s in stats])
            number, number_se = mean_se([1.0] * len(stats))  # one explanation per neuron
            rows.append({"model": model, "layer": name, "mode": "stats", "method": METHODS["stats"],
                         "neurons": len(stats), "failed": 0, "score_test": test, "score_test_se": test_se,
                         "score_valid": valid, "score_valid_se": valid_se, "number": number, "number_se": number_se,
                         "lm_tokens_per_neuron": 0.0})
        if "refine" in runs and "norefine" in runs:
            ref, abl = runs["refine"].by_unit(), runs["norefine"].by_unit()
            pairs = [(ref[u], abl[u]) for u in sorted(ref) if here(u) and u in abl
                     and ref[u].status == "done" and abl[u].status == "done"]
            delta, delta_se = mean_se([a.score_test - b.score_test for a, b in pairs])
            dvalid, _ = mean_se([a.score_valid - b.score_valid for a, b in pairs])
            gains.append({"model": model, "layer": name, "paired_neurons": len(pairs),
                          "same_modes": sum(same_modes(a, b) for a, b in pairs),
                          "gain_test": delta, "gain_test_se": delta_se, "gain_valid": dvalid,
                          "improved_test": sum(a.score_test > b.score_test for a, b in pairs)})
    return {"rows": rows, "gains": gains}


def table1_markdown(t1: dict) -> str:
    lines = ["| Model | Layer | Method | Score (test) ↑ | Score (valid) | Number | neurons (failed) |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in t1["rows"]:
        lines.append(f"| {_md_cell(r['model'])} | {r['layer']} | {r['method']} | "
                     f"{_pm(r['score_test'], r['score_test_se'])} | {fmt(r['score_valid'])} | "
                     f"{_pm(r['number'], r['number_se'], 2)} | {r['neurons']} ({r['failed']}) |")
    if t1["gains"]:
        lines += ["", "Refinement gain on the same neurons (NeuronScope minus w/o Refinement, paired):", "",
                  "| Layer | paired neurons | same modes in both runs | gain test | gain valid | improved on test |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for g in t1["gains"]:
            lines.append(f"| {g['layer']} | {g['paired_neurons']} | {g['same_modes']} | "
                         f"{_pm(g['gain_test'], g['gain_test_se'])} | {fmt(g['gain_valid'])} | "
                         f"{g['improved_test']} of {g['paired_neurons']} |")
    return "\n".join(lines)


# -- Figure 2a ------------------------------------------------------------------------------------------------------
def figure2a(run: RunData, *, per_layer: int = 0, seed: int = 0) -> dict:
    """Per layer, the mean best-valid-score per iteration (iteration 0 = the representatives) over its refined
    neurons (``per_layer`` drawn with ``seed`` when > 0), each neuron the mean over its modes."""
    length = int((run.config.get("explain") or {}).get("iterations", 0)) + 1 or None
    refined = [r for r in run.done if neuron_trajectory(r)]
    if per_layer:
        rng, chosen = random.Random(seed), []
        for layer in sorted({r.unit.layer for r in refined}):
            pool = [r for r in refined if r.unit.layer == layer]
            chosen += sorted(rng.sample(pool, min(per_layer, len(pool))), key=lambda r: r.unit)
        refined = chosen
    curves = mean_trajectories(refined, length)
    units = {layer: [str(r.unit) for r in refined if r.unit.layer == layer] for layer in curves}
    return {"iterations": length - 1 if length else None,
            "layers": {str(layer): {"mean": ys, "neurons": n, "units": units[layer]}
                       for layer, (ys, n) in curves.items()}}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_figure2a(f2a: dict, path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (layer, d) in enumerate(f2a["layers"].items()):
        ax.plot(range(len(d["mean"])), d["mean"], marker="o", color=PALETTE[k % len(PALETTE)],
                label=f"layer {layer} (n={d['neurons']})")
    ax.set_xlabel("refinement iteration (0 = cluster representative)")
    ax.set_ylabel("mean best valid score")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if f2a["iterations"]:
        ax.set_xticks(range(f2a["iterations"] + 1))
    ax.legend(fontsize=8)
    _save_png(fig, path)


# -- Figure 2b ------------------------------------------------------------------------------------------------------
def pick_figure2b(run: RunData, neuron: str = "") -> NeuronRecord | None:
    if neuron:
        unit = UnitId.parse(neuron)
        record = run.by_unit().get(unit)
        if record is None or record.status != "done":
            raise ConfigError(f"analysis.figure2b_neuron {neuron} is not a finished neuron of {run.path}")
        return record
    candidates = [r for r in run.done if len(r.typed_trace.conditions) >= 2]
    return min(candidates, key=lambda r: (-(r.number or 0), -len(r.typed_trace.conditions), r.unit), default=None)


def pca2(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Rows of ``x`` projected on its first two principal components, and their explained-variance ratios."""
    centred = np.asarray(x, dtype=np.float64) - np.asarray(x, dtype=np.float64).mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    total = float((s ** 2).sum())
    ratios = [float(v) / total if total > 0 else 0.0 for v in (s ** 2)[:2]]
    coords[:, 0] *= np.sign(coords[np.argmax(np.abs(coords[:, 0])), 0]) or 1.0  # a fixed orientation
    return coords, ratios + [0.0] * (2 - len(ratios))


def figure2b(run: RunData, record: NeuronRecord, embedder) -> dict:
    trace = record.typed_trace
    conditions, labels = list(trace.conditions), trace.condition_modes()
    coords, ratios = pca2(embedder.embed(conditions))
    reps = [m.representative for m in trace.modes]
    return {"unit": str(record.unit), "embedder": embedder.name,
            "noise_policy": ((run.config.get("explain") or {}).get("cluster") or {}).get("noise"),
            "explained_variance": ratios, "points": [
                {"condition": c, "cluster": lab, "representative": c in reps, "x": float(p[0]), "y": float(p[1])}
                for c, lab, p in zip(conditions, labels, coords)]}


def plot_figure2b(f2b: dict, path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    clusters = sorted({p["cluster"] for p in f2b["points"]})
    for c in clusters:
        pts = [p for p in f2b["points"] if p["cluster"] == c]
        color = "#999999" if c < 0 else PALETTE[c % len(PALETTE)]
        ax.scatter([p["x"] for p in pts], [p["y"] for p in pts], s=60, color=color, alpha=0.85,
                   label="dropped (noise)" if c < 0 else f"mode {c + 1} ({len(pts)})")
        reps = [p for p in pts if p["representative"]]
        ax.scatter([p["x"] for p in reps], [p["y"] for p in reps], s=220, marker="*", color=color,
                   edgecolors="black", linewidths=0.8)
    for i, p in enumerate(f2b["points"], 1):
        ax.annotate(str(i), (p["x"], p["y"]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ev = f2b["explained_variance"]
    ax.set_xlabel(f"PC1 ({ev[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ev[1]:.0%} of variance)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="HDBSCAN cluster (★ representative)", title_fontsize=8)
    _save_png(fig, path)


# -- Table 3 ------------------------------------------------------------------------------------------------------
def table3(runs: dict[str, RunData]) -> list[dict]:
    if "baseline" not in runs or "refine" not in runs:
        return []
    base, ours = runs["baseline"].by_unit(), runs["refine"].by_unit()
    rows = []
    for unit in sorted(set(base) & set(ours)):
        b, o = base[unit], ours[unit]
        if b.status != "done" or o.status != "done":
            continue
        b_finals, o_finals = b.typed_trace.finals, o.typed_trace.finals
        rows.append({"unit": str(unit), "layer": unit.layer,
                     "baseline": b_finals[0].explanation if b_finals else None,
                     "baseline_valid": b.score_valid, "baseline_test": b.score_test,
                     "neuronscope": [f.explanation for f in o_finals],
                     "neuronscope_valid_each": [f.valid for f in o_finals],
                     "neuronscope_test_each": [f.test for f in o_finals],
                     "neuronscope_valid": o.score_valid, "neuronscope_test": o.score_test, "number": o.number})
    return rows


def spread(rows: list[dict], n: int) -> list[dict]:
    """Up to ``n`` rows taken round-robin over layers (first units first), so every layer is shown."""
    by_layer: dict[int, list[dict]] = {}
    for r in rows:
        by_layer.setdefault(r["layer"], []).append(r)
    out, k = [], 0
    while len(out) < n and any(k < len(v) for v in by_layer.values()):
        out += [v[k] for _, v in sorted(by_layer.items()) if k < len(v)][: n - len(out)]
        k += 1
    return sorted(out, key=lambda r: UnitId.parse(r["unit"]))


def table3_markdown(rows: list[dict], n: int) -> str:
    if not rows:
        return "(no neuron finished in both the baseline and the NeuronScope run)"
    lines = ["| Layer / Neuron | Description by single-pass baseline | test | Description by NeuronScope "
             "(one per mode) | test |", "|---|---|---:|---|---:|"]
    for r in spread(rows, n):
        ours = "<br>".join(f"[{k}] {_md_cell(e)} (test {fmt(t)})"
                           for k, (e, t) in enumerate(zip(r["neuronscope"], r["neuronscope_test_each"]), 1))
        layer, index = r["unit"].split(":")
        lines.append(f"| {layer} / {index} | {_md_cell(r['baseline'])} | {fmt(r['baseline_test'])} | {ours} | "
                     f"{fmt(r['neuronscope_test'])} |")
    b, _ = mean_se([r["baseline_test"] for r in rows])
    o, _ = mean_se([r["neuronscope_test"] for r in rows])
    wins = sum(r["neuronscope_test"] > r["baseline_test"] for r in rows)
    lines += ["", f"Over all {len(rows)} neurons finished in both runs: mean test score baseline {fmt(b)}, "
                  f"NeuronScope {fmt(o)}; NeuronScope higher on {wins} of {len(rows)}."]
    return "\n".join(lines)


# -- everything ---------------------------------------------------------------------------------------------------
def _caveats(runs: dict[str, RunData]) -> list[str]:
    notes = []
    sims = {run.config.get("simulator") for run in runs.values()}
    for sim in sorted(s for s in sims if s):
        if sim.startswith("prompted:"):
            notes.append(f"The simulator `{sim}` is a prompted small model. The offline default measured in "
                         "experiments/results/simulator_sensitivity.md does not respond to explanations, so "
                         "its scores are plumbing, not evidence (README: \"Which simulator gives meaningful "
                         "scores\").")
        elif sim == "keyword":
            notes.append("The `keyword` simulator predicts 10 on tokens whose word the explanation names: a "
                         "transparent floor, not the paper's fine-tuned simulator.")
    return notes


def _runs_table(runs: dict[str, RunData]) -> str:
    lines = ["| method | run file | created | neurons done | failed | LM tokens | wall time (min) |",
             "|---|---|---|---:|---:|---:|---:|"]
    for mode, run in runs.items():
        lines.append(f"| {METHODS[mode]} | `{run.path}` | {run.meta.get('created', '?')} | {len(run.done)} | "
                     f"{len(run.failed)} | "
                     f"{sum(r.lm_tokens or 0 for r in run.records):,} | "
                     f"{sum(r.seconds or 0 for r in run.records) / 60:.1f} |")
    failures = [(mode, r) for mode, run in runs.items() for r in run.failed]
    if failures:
        lines += ["", "Failed neurons (first 10):", ""]
        lines += [f"- {METHODS[m]} {r.unit}: {r.error}" for m, r in failures[:10]]
    return "\n".join(lines)


def analyze(run_paths: dict[str, str | Path], out: str | Path, *, model: str = "", command: str = "",
            config_text: str = "", figure2a_neurons: int = 0, figure2b_neuron: str = "", table3_rows: int = 8,
            seed: int = 0, embedder=None, title: str = "") -> dict:
    """Write table1.{csv,json,md}, figure2a.{csv,json,png}, figure2b.{json,png}, table3.{csv,json,md},
    neurons.csv and summary.md into ``out``; returns what was written as a dict."""
    runs = {mode: read_run(path) for mode, path in run_paths.items() if path is not None}
    if not runs:
        raise ConfigError("no run file given: pass at least one of --refine, --norefine, --baseline")
    for mode, run in runs.items():
        if run.mode != mode:
            raise ConfigError(f"{run.path} is a {run.mode} run, given as {mode}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model or _model_name(runs)
    title = title or model
    written = {}

    t1 = table1(runs, model)
    atomic_write_json(out / "table1.json", t1)
    atomic_write_text(out / "table1.csv", _csv(t1["rows"], list(t1["rows"][0]) if t1["rows"] else ["model"]))
    atomic_write_text(out / "table1.md", table1_markdown(t1) + "\n")
    written["table1"] = t1

    neurons = [{"unit": str(r.unit), "mode": mode, "status": r.status, "number": r.number, "score_valid": r.score_valid,
                "score_test": r.score_test, "lm_tokens": r.lm_tokens, "seconds": r.seconds, "error": r.error}
               for mode, run in runs.items() for r in run.records]
    atomic_write_text(out / "neurons.csv", _csv(neurons, ["unit", "mode", "status", "number", "score_valid",
                                                          "score_test", "lm_tokens", "seconds", "error"]))

    f2a_md = "(no refinement run)"
    if "refine" in runs:
        f2a = figure2a(runs["refine"], per_layer=figure2a_neurons, seed=seed)
        written["figure2a"] = f2a
        atomic_write_json(out / "figure2a.json", f2a)
        atomic_write_text(out / "figure2a.csv", _csv(
            [{"layer": layer, "iteration": i, "mean_valid": y, "neurons": d["neurons"]}
             for layer, d in f2a["layers"].items() for i, y in enumerate(d["mean"])],
            ["layer", "iteration", "mean_valid", "neurons"]))
        if f2a["layers"]:
            plot_figure2a(f2a, out / "figure2a.png", f"{title}: mean valid score per refinement iteration")
            n_it = max(len(d["mean"]) for d in f2a["layers"].values())
            f2a_md = "\n".join(
                ["| Layer | n | " + " | ".join(f"it {i}" for i in range(n_it)) + " |",
                 "|---:|---:|" + "---:|" * n_it]
                + [f"| {layer} | {d['neurons']} | " + " | ".join(fmt(y) for y in d["mean"]) + " |"
                   for layer, d in f2a["layers"].items()]) + "\n\n![Figure 2a](figure2a.png)"
        else:
            f2a_md = "(no refined neuron)"

    f2b_md = "(no refinement run)"
    if "refine" in runs:
        record = pick_figure2b(runs["refine"], figure2b_neuron)
        if record is None:
            f2b_md = "(no finished neuron with two or more conditions)"
        else:
            try:
                if embedder is None:
                    from ns_dspy.agents import build_embedder

                    embedder = build_embedder(runs["refine"].config.get("embedder") or "minilm")
                f2b = figure2b(runs["refine"], record, embedder)
            except NsDspyError as err:  # e.g. the run's embedder needs a key this machine lacks
                log.warning("Figure 2b skipped: %s", err)
                f2b_md = f"(skipped: {err})"
            else:
                written["figure2b"] = f2b
                atomic_write_json(out / "figure2b.json", f2b)
                plot_figure2b(f2b, out / "figure2b.png",
                              f"{title}: conditions of neuron {f2b['unit']} (PCA of {f2b['embedder']} embeddings)")
                f2b_md = "\n".join([f"Neuron {f2b['unit']}: {len(f2b['points'])} atomic conditions in "
                                    f"{record.number} modes (noise policy `{f2b['noise_policy']}`); PCA keeps "
                                    f"{sum(f2b['explained_variance']):.0%} of the variance.", "",
                                    "![Figure 2b](figure2b.png)", ""]
                                   + [f"{i}. mode {p['cluster'] + 1 if p['cluster'] >= 0 else '-'}"
                                      f"{' ★' if p['representative'] else ''}: {_md_cell(p['condition'])}"
                                      for i, p in enumerate(f2b["points"], 1)])

    t3 = table3(runs)
    written["table3"] = t3
    atomic_write_json(out / "table3.json", t3)
    atomic_write_text(out / "table3.csv", _csv(
        [{**r, "neuronscope": json.dumps(r["neuronscope"], ensure_ascii=False),
          "neuronscope_valid_each": json.dumps(r["neuronscope_valid_each"]),
          "neuronscope_test_each": json.dumps(r["neuronscope_test_each"])} for r in t3],
        ["unit", "layer", "baseline", "baseline_valid", "baseline_test", "neuronscope", "neuronscope_valid_each",
         "neuronscope_test_each", "neuronscope_valid", "neuronscope_test", "number"]))
    t3_md = table3_markdown(t3, table3_rows) if "baseline" in runs and "refine" in runs else "(needs both runs)"
    atomic_write_text(out / "table3.md", t3_md + "\n")

    caveats = _caveats(runs)
    summary = [f"# {title}: the paper's Table 1, Figure 2a, Figure 2b and Table 3, measured", "",
               "Made by:", "", "```bash", command or "(library call)", "```", "", _provenance(), "",
               "## Runs", "", _runs_table(runs), "",
               "## Table 1: Score and Number, with and without refinement", "",
               "Score: the neuron-level (polysemantic) Pearson correlation on the held-out test split, mean ± "
               "standard error over the layer's finished neurons; valid is the split explanations were selected "
               "on. Number: semantic modes per neuron.", "", table1_markdown(t1), "",
               "## Figure 2a: mean score against refinement iteration", "",
               "Per neuron the mean over its modes of the best valid score after each iteration (0: the cluster "
               "representative; a mode whose refinement stopped early keeps its best), then the mean per layer.",
               "", f2a_md, "", "## Figure 2b: atomic conditions of one neuron, PCA, coloured by cluster", "", f2b_md,
               "", "## Table 3: single-pass baseline against NeuronScope", "", t3_md, ""]
    if caveats:
        summary += ["## Read with care", ""] + [f"- {c}" for c in caveats] + [""]
    if config_text:
        summary += ["## Configuration", "", "```toml", config_text.rstrip(), "```", ""]
    atomic_write_text(out / "summary.md", "\n".join(summary))
    return written


def _provenance() -> str:
    """When and with what the analysis ran (the runs' own dates are in the runs table)."""
    import os
    import platform
    import subprocess
    from datetime import datetime, timezone

    from ns_dspy import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return (f"Analysed {datetime.now(timezone.utc).isoformat(timespec='seconds')} with ns-dspy {__version__}"
            f"{f' (git {commit})' if commit else ''}, Python {platform.python_version()}, {platform.system()} "
            f"{platform.machine()}, {os.cpu_count()} CPUs.")


def _model_name(runs: dict[str, RunData]) -> str:
    for run in runs.values():
        store = run.config.get("store")
        try:
            manifest = json.loads((Path(store) / "manifest.json").read_text(encoding="utf-8"))
            return manifest.get("model", {}).get("name") or "?"
        except (OSError, TypeError, ValueError):
            continue
    return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for mode in METHODS:
        ap.add_argument(f"--{mode}", default=None, help=f"run file of the {METHODS[mode]} run")
    ap.add_argument("--out", required=True, help="folder for the tables, plots and summary.md")
    ap.add_argument("--model", default="", help="model name in the tables (default: from the run's store)")
    ap.add_argument("--figure2a-neurons", type=int, default=0, help="neurons per layer in Figure 2a (0 = all)")
    ap.add_argument("--figure2b-neuron", default="", help="LAYER:INDEX for Figure 2b (default: most modes)")
    ap.add_argument("--table3-rows", type=int, default=8, help="neurons in the Markdown Table 3")
    args = ap.parse_args(argv)
    configure_logging(ours=(*OUR_LOGGERS, "paper_analysis"))
    command = shlex.join(["python", "experiments/paper_analysis.py", *(argv if argv is not None else sys.argv[1:])])
    try:
        analyze({m: getattr(args, m) for m in METHODS}, args.out, model=args.model, command=command,
                figure2a_neurons=args.figure2a_neurons, figure2b_neuron=args.figure2b_neuron,
                table3_rows=args.table3_rows)
    except NsDspyError as err:
        print(f"paper_analysis: error: {err}", file=sys.stderr)
        return 2
    print(f"tables, plots and summary.md written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
