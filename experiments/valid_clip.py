"""Selection on valid with the valid activations clipped: does a choice less carried by a few spikes generalise?

    python experiments/valid_clip.py 11:1275,11:815,...,5:819 none,trainmax,q0.999 \
        experiments/results/valid-clip-dev/clip.json

The statistical explainer (shipped defaults, default simulator) chooses its set on valid three ways: as shipped
(``none``), with every valid activation above the unit's largest train activation clipped to it (``trainmax``),
and clipped at the valid split's own 99.9th percentile (``q0.999``); each choice is scored on the unclipped test
windows. Development neurons only. Arguments: neurons, rules, output JSON (rewritten after each neuron).
"""
import sys, json, time, dataclasses
import numpy as np
from ns_dspy.build import build_simulator
from ns_dspy.config import ExplainConfig, SimulatorConfig
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.program import NeuronScope
from ns_dspy.scoring import HeldOut, polysemantic
from ns_dspy.types import UnitId

store = ExemplarStore.open('experiments/work/quality/store')
sim = build_simulator(SimulatorConfig('finetuned:gemma-3-270m'))
neurons = sys.argv[1].split(',')
rules = sys.argv[2].split(',')
out = {}
def clipped(valid, cap):
    exs = tuple(dataclasses.replace(e, activations=np.minimum(np.asarray(e.activations), cap)) for e in valid.exemplars)
    return HeldOut(valid.unit, 'valid', exs)
for n in neurons:
    l, i = map(int, n.split(':')); u = UnitId(l, i)
    train = store.train_exemplars(u)
    valid, test = HeldOut.from_store(store, u, 'valid'), HeldOut.from_store(store, u, 'test')
    tmax = max(float(np.max(e.activations)) for e in train)
    va = np.concatenate([np.asarray(e.activations) for e in valid.exemplars])
    row = {}
    for rule in rules:
        t = time.time()
        if rule == 'none': v = valid
        elif rule == 'trainmax': v = clipped(valid, tmax)
        elif rule.startswith('q'): v = clipped(valid, float(np.quantile(va, float(rule[1:]))))
        got = NeuronScope(sim, None, ExplainConfig(method='stats'))(train=train, valid=v)
        te = polysemantic(sim, got.explanations, test, calibration=got.calibration).value
        row[rule] = dict(valid=got.polysemantic, test=te, n=len(got.explanations), s=round(time.time()-t,1))
    out[n] = row
    shown = ' | '.join(f"{r}: v {row[r]['valid']:.3f} t {row[r]['test']:.3f} ({row[r]['n']}, {row[r]['s']}s)"
                       for r in rules)
    print(n, 'valid max %.2f train max %.2f' % (va.max(), tmax), shown, flush=True)
    json.dump(out, open(sys.argv[3], 'w'), indent=1)
o = np.array([[out[n][r]['test'] for r in rules] for n in out])
for j, r in enumerate(rules[1:], 1):
    d = o[:, j] - o[:, 0]
    print(r, 'test %.3f vs %.3f: paired %+.4f +- %.4f (%d up, %d down)' % (
        o[:, j].mean(), o[:, 0].mean(), d.mean(), d.std(ddof=1) / np.sqrt(len(d)), (d > 1e-4).sum(), (d < -1e-4).sum()))
