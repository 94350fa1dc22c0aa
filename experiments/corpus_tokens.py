"""Token statistics over the whole train split of the recording, not only over the unit's train windows.

    python experiments/corpus_tokens.py lookup 1:2010,3:1545,...,5:819 \
        > experiments/results/corpus-tokens-dev/lookup.txt
    python experiments/corpus_tokens.py explain 1:2010,3:1545,...,11:815 \
        experiments/results/corpus-tokens-dev/explain.json

The explainer sees a unit's 40 top and 20 random train windows (3,840 tokens); the recording's train split has
about 26,000. Every train-split window is run through gemma-3-270m again (the recording's own hookpoint code; the
activations are checked against the stored train windows), and per unit each token's mean activation over all of
them is its *corpus* mean.

``lookup``: the exact token lookup (each token's mean train activation, the train mean for an unseen token) read
on the test windows, from the unit's train windows (as the explainer sees them), from the whole train split, and
blended, ``(window sum + k * corpus mean) / (window count + k)`` (k = 2, 8, 32; the window mean matches the test
windows' selection, the corpus mean fills and steadies it). No simulator, no LM.

``explain``: the statistical explainer (shipped defaults, default simulator) with its word lists ranked on the
window statistics (as shipped) and on the blend with k = 8, each choice scored on test. Development neurons only.
"""
import json
import sys
import time

import numpy as np
import torch

import ns_dspy.program as program
from ns_dspy.agents import evidence as ev
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.models.hookpoints import HookSpec
from ns_dspy.models.subject import load_subject
from ns_dspy.recording.hooks import capture
from ns_dspy.types import UnitId

STORE = "experiments/work/quality/store"
BLEND = 8.0


def train_split_activations(store_dir: str, neurons: list[tuple[int, int]]):
    """``(train-split window indices, {unit: (windows, 64) activations})`` from a fresh forward pass."""
    tok = np.load(f"{store_dir}/token_ids.npy")
    train = np.flatnonzero(np.load(f"{store_dir}/window_split.npy") == 0)
    subject = load_subject("gemma-3-270m")
    hook = HookSpec.parse("mlp")
    paths = {layer: hook.module_path(subject.model, layer) for layer in {l for l, _ in neurons}}
    n_prefix = len(subject.prefix_ids)
    prefix = torch.tensor(subject.prefix_ids, dtype=torch.long)
    acts = {u: np.zeros((len(train), tok.shape[1]), np.float32) for u in neurons}
    seen: dict[int, torch.Tensor] = {}
    fns = {path: (lambda x, layer=layer: seen.__setitem__(layer, x[:, n_prefix:, :].float()))
           for layer, path in paths.items()}
    with torch.inference_mode(), capture(subject.model, fns, hook.io):
        for s in range(0, len(train), 32):
            ids = torch.tensor(tok[train[s:s + 32]])
            subject.body(input_ids=torch.cat([prefix.expand(len(ids), -1), ids], 1), use_cache=False)
            for layer, unit in neurons:
                acts[layer, unit][s:s + 32] = seen[layer][:, :, unit].numpy()
    return train, acts


def check(store_dir: str, unit: tuple[int, int], train: np.ndarray, acts: np.ndarray) -> float:
    """Correlation between the recomputed and the stored activations of the unit's train top windows."""
    layer, n = unit
    windows = np.load(f"{store_dir}/layer_{layer}/train_top_windows.npy", mmap_mode="r")[n]
    stored = np.load(f"{store_dir}/layer_{layer}/train_top_acts.npy", mmap_mode="r")[n]
    row = {int(w): i for i, w in enumerate(train)}
    return float(np.corrcoef(acts[[row[int(w)] for w in windows]].ravel(), np.asarray(stored).ravel())[0, 1])


def _table(ids: np.ndarray, acts: np.ndarray) -> tuple[dict[int, float], dict[int, int], float]:
    u, inv = np.unique(ids, return_inverse=True)
    sums, counts = np.bincount(inv, acts), np.bincount(inv)
    return dict(zip(u.tolist(), (sums / counts).tolist())), dict(zip(u.tolist(), counts.tolist())), float(acts.mean())


def lookup(neurons: list[tuple[int, int]]) -> None:
    tok = np.load(f"{STORE}/token_ids.npy")
    train, acts = train_split_activations(STORE, neurons)
    rows = []
    for layer, n in neurons:
        def part(split: str, what: str) -> np.ndarray:
            return np.concatenate([np.load(f"{STORE}/layer_{layer}/{split}_{kind}_{what}.npy", mmap_mode="r")[n]
                                   for kind in ("top", "random")])
        window_mean, window_count, window_mu = _table(tok[part("train", "windows")].ravel(),
                                                      part("train", "acts").ravel().astype(np.float64))
        corpus_mean, _, corpus_mu = _table(tok[train].ravel(), acts[layer, n].ravel().astype(np.float64))
        test_ids, truth = tok[part("test", "windows")].ravel(), part("test", "acts").ravel()
        preds = {"windows": [window_mean.get(i, window_mu) for i in test_ids],
                 "corpus": [corpus_mean.get(i, corpus_mu) for i in test_ids]}
        for k in (2, 8, 32):
            preds[f"blend k={k}"] = [(window_mean.get(i, 0.0) * window_count.get(i, 0)
                                      + k * corpus_mean.get(i, corpus_mu)) / (window_count.get(i, 0) + k)
                                     for i in test_ids]
        row = {"unit": f"{layer}:{n}", "check": round(check(STORE, (layer, n), train, acts[layer, n]), 4)}
        row.update({name: round(float(np.corrcoef(np.asarray(p), truth)[0, 1]), 4) for name, p in preds.items()})
        row["unseen in windows"] = round(float(np.mean([i not in window_mean for i in test_ids])), 3)
        row["unseen in corpus"] = round(float(np.mean([i not in corpus_mean for i in test_ids])), 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\nexact token lookup on test, %d units (mean; paired against the window statistics):" % len(rows))
    for name in ("windows", "corpus", "blend k=2", "blend k=8", "blend k=32"):
        d = np.array([r[name] - r["windows"] for r in rows])
        print("  %-11s %.3f  %+.3f +- %.3f (%d up, %d down)" % (name, np.mean([r[name] for r in rows]), d.mean(),
              d.std(ddof=1) / np.sqrt(len(d)), (d > 1e-4).sum(), (d < -1e-4).sum()))


def blended_ranking(strings: list[str], ids: np.ndarray, acts: np.ndarray):
    """``ranked_tokens`` with each token's window mean blended with its mean over the whole train split."""
    keys = [ev.token_key(s) for s in strings]
    corpus_sum: dict[str, float] = {}
    corpus_count: dict[str, int] = {}
    for i, a in zip(ids.tolist(), acts.tolist()):
        corpus_sum[keys[i]] = corpus_sum.get(keys[i], 0.0) + a
        corpus_count[keys[i]] = corpus_count.get(keys[i], 0) + 1
    shown_of = {keys[i]: ev._show(strings[i]) for i in set(ids.tolist())}
    corpus_mu = float(acts.mean())

    def ranked(exemplars, *, prior=2.0, most=40, lowest=False):
        if lowest:
            return ev.ranked_tokens(exemplars, prior=prior, most=most, lowest=True)
        acts, total, count, shown = ev.token_totals(exemplars)
        mu = float(acts.mean())
        value = {}
        for k, c in corpus_count.items():
            if k.strip() and c >= 2:
                corpus = (corpus_sum[k] + prior * corpus_mu) / (c + prior)
                value[k] = (total.get(k, 0.0) + BLEND * corpus) / (count.get(k, 0) + BLEND)
        value.update({k: (total[k] + prior * mu) / (count[k] + prior)
                      for k in total if k.strip() and k not in value and count[k] >= 2})
        order = sorted(value, key=lambda k: (-value[k], k))[:most]
        return ev.ranked_rows(order, acts, total, count, {**shown_of, **shown})
    return ranked


def explain(neurons: list[tuple[int, int]], out_path: str) -> None:
    from ns_dspy.build import build_simulator
    from ns_dspy.config import ExplainConfig, SimulatorConfig
    from ns_dspy.program import NeuronScope
    from ns_dspy.scoring import HeldOut, polysemantic

    store = ExemplarStore.open(STORE)
    strings = json.load(open(f"{STORE}/strings.json"))
    local = np.load(f"{STORE}/windows.npy")  # indices into strings.json
    train, acts = train_split_activations(STORE, neurons)
    sim = build_simulator(SimulatorConfig("finetuned:gemma-3-270m"))
    shipped = program.ranked_tokens
    out = {}
    for layer, n in neurons:
        u = UnitId(layer, n)
        train_ex = store.train_exemplars(u)
        valid, test = HeldOut.from_store(store, u, "valid"), HeldOut.from_store(store, u, "test")
        row = {}
        for name, ranking in (("windows", shipped),
                              ("blend", blended_ranking(strings, local[train].ravel(), acts[layer, n].ravel()))):
            start = time.time()
            program.ranked_tokens = ranking
            try:
                got = NeuronScope(sim, None, ExplainConfig(method="stats"))(train=train_ex, valid=valid)
            finally:
                program.ranked_tokens = shipped
            row[name] = {"valid": got.polysemantic, "n": len(got.explanations), "s": round(time.time() - start, 1),
                         "test": polysemantic(sim, got.explanations, test, calibration=got.calibration).value,
                         "explanations": list(got.explanations)}
        out[f"{layer}:{n}"] = row
        print(f"{layer}:{n}", " | ".join(f"{k}: valid {v['valid']:.3f} test {v['test']:.3f} ({v['n']} lists)"
                                         for k, v in row.items()), flush=True)
        json.dump(out, open(out_path, "w"), indent=1)
    d = np.array([r["blend"]["test"] - r["windows"]["test"] for r in out.values()])
    print("blend %.3f against windows %.3f on test: paired %+.4f +- %.4f (%d up, %d down)" % (
        np.mean([r["blend"]["test"] for r in out.values()]), np.mean([r["windows"]["test"] for r in out.values()]),
        d.mean(), d.std(ddof=1) / np.sqrt(len(d)), (d > 1e-4).sum(), (d < -1e-4).sum()))


if __name__ == "__main__":
    chosen = [tuple(map(int, n.split(":"))) for n in sys.argv[2].split(",")]
    if sys.argv[1] == "lookup":
        lookup(chosen)
    else:
        explain(chosen, sys.argv[3])
