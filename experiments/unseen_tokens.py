"""How much of a unit's test activation falls on tokens its train windows never showed, and what similarity adds.

    python experiments/unseen_tokens.py \
        1:2010,3:1545,5:1812,7:334,9:1397,11:1275,1:1824,3:567,5:1727,7:1665,9:1766,11:815 \
        > experiments/results/unseen-tokens-dev/output.txt

A word list can only name tokens the train windows showed. Per unit: the token lookup (each token's mean train
activation, the unit's train mean for a token never seen) read exactly on test and on valid, and the same with
each unseen token filled from its k nearest seen tokens in gemma-3-270m's input-embedding space (cosine-weighted
mean of their train means, k = 1, 5, 20): how much a generalisation by similarity could add, before any
simulator reads it. No simulator, no LM. Development neurons only.
"""
import sys

import numpy as np
from safetensors import safe_open

from ns_dspy.exemplars.store import ExemplarStore
from ns_dspy.types import UnitId

MODEL = "~/.cache/ns_dspy/models/gemma-3-270m/model.safetensors"


def main(neurons: list[str]) -> None:
    from pathlib import Path

    with safe_open(str(Path(MODEL).expanduser()), "pt") as f:
        emb = f.get_tensor("model.embed_tokens.weight").float().numpy()
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-6)
    store = ExemplarStore.open("experiments/work/quality/store")
    out = []
    for name in neurons:
        layer, index = map(int, name.split(":"))
        unit = UnitId(layer, index)

        def pooled(split):
            xs = [x for kind in ("top", "random") for x in store.exemplars(unit, split, kind)]
            return (np.concatenate([np.asarray(x.token_ids) for x in xs]),
                    np.concatenate([np.asarray(x.activations) for x in xs]))

        tid, ta = pooled("train")
        vid, va = pooled("valid")
        eid, ea = pooled("test")
        toks = np.unique(tid)
        means = np.array([ta[tid == t].mean() for t in toks])
        lut, base = dict(zip(toks, means)), ta.mean()

        def pred(ids, k=None):
            p = np.array([lut.get(t, np.nan) for t in ids])
            miss = np.isnan(p)
            if k and miss.any():
                unseen = np.unique(ids[miss])
                sim = emb[unseen] @ emb[toks].T
                idx = np.argsort(-sim, axis=1)[:, :k]
                w = np.take_along_axis(sim, idx, 1).clip(0)
                fill = dict(zip(unseen, (means[idx] * w).sum(1) / w.sum(1).clip(1e-6)))
                p[miss] = [fill[t] for t in ids[miss]]
            p[np.isnan(p)] = base
            return p

        unseen = ~np.isin(eid, toks)
        high = ea > np.percentile(ea, 95)
        r = [np.corrcoef(pred(eid, k), ea)[0, 1] for k in (None, 1, 5, 20)]
        rv = [np.corrcoef(pred(vid, k), va)[0, 1] for k in (None, 1, 5, 20)]
        out.append(r + rv + [unseen.mean(), (unseen & high).sum() / high.sum()])
        tests, valids = " ".join(f"{x:.3f}" for x in r), " ".join(f"{x:.3f}" for x in rv)
        print(f"{name}: unseen {unseen.mean():.2f} of test tokens, {(unseen & high).sum() / high.sum():.2f} of the "
              f"top 5% | test lookup, knn1, knn5, knn20: {tests} | valid: {valids}", flush=True)
    o = np.array(out)
    print("mean", o.mean(0).round(3))
    for j, k in ((2, 5), (3, 20)):
        d = o[:, j] - o[:, 0]
        print(f"paired knn{k} - lookup on test {d.mean():+.3f} +- {d.std(ddof=1) / np.sqrt(len(d)):.3f}")


if __name__ == "__main__":
    main(sys.argv[1].split(","))
