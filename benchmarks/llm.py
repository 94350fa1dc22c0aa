"""The in-process explainer LM (llama.cpp): prompt and generation tokens/s of the installed build against others.

    python benchmarks/llm.py [--model local:qwen2.5-coder-1.5b-instruct] [--native DIR] [--prompt 231]
                             [--generate 100] [--threads 2] [--repeats 2] [--busy 2]
                             [--batches 512,128,64 --batch-prompt 2048]

Each configuration runs in its own child process (llama.cpp's OpenMP runtime reads its wait policy once, when
the library loads) on the same GGUF, prompt and thread count, and is timed ``--repeats`` times (the best is
kept, the machine being shared):

- ``installed``: the library ns-dspy uses (``pip install -r requirements/local.txt``: built for any x86-64
  CPU with AVX2/FMA/F16C), with llama.cpp's extra weight buffers (repacked layouts) on, OpenMP passive;
- ``installed, plain buffers``: the same with the extra buffers off (the guard's fallback for a native AMX build);
- ``native``: a build for this machine's own CPU (``-march=native``), when ``--native DIR`` names a folder
  holding its ``llama_cpp`` package (e.g. a ``pip wheel llama-cpp-python==0.3.36`` unpacked there);
- the installed build again while ``--busy`` processes spin on the CPU, with OpenMP passive (ns-dspy's
  setting) and with libgomp's default policy, which spins at barriers;
- with ``--batches``: the installed build evaluating a ``--batch-prompt``-token prompt in batches of each size
  (llama.cpp's ``n_batch``; ns-dspy's is ``ns_dspy.lms.guard.PROMPT_BATCH``, since a cached prefix is reused in
  whole batches only).

Prints tokens/s per configuration and the ratios the README quotes, with this CPU's model name.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = r'''
import json, sys, time
args = json.loads(sys.argv[1])
from ns_dspy.lms.guard import load_kwargs, weight_buffers
from llama_cpp import Llama
with weight_buffers(args["extra"]):
    kwargs = load_kwargs(4096, args["threads"], 0, 0, None)
    kwargs["n_batch"] = args.get("n_batch") or kwargs["n_batch"]
    llama = Llama(model_path=args["model"], **kwargs)
text = ("def fibonacci(n):\n    # return the n-th Fibonacci number, iteratively\n    a, b = 0, 1\n"
        "    for _ in range(n):\n        a, b = b, a + b\n    return a\n") * 400
tokens = llama.tokenize(text.encode())[: args["prompt"]]
best = None
for _ in range(args["repeats"]):
    llama.reset()
    t0 = time.perf_counter()
    llama.eval(tokens)
    t1 = time.perf_counter()
    for _ in range(args["generate"]):
        llama.eval([llama.sample(temp=0.0)])
    t2 = time.perf_counter()
    run = (len(tokens) / (t1 - t0), args["generate"] / (t2 - t1))
    best = run if best is None else (max(best[0], run[0]), max(best[1], run[1]))
import llama_cpp
print(json.dumps({"prompt_tps": best[0], "gen_tps": best[1], "prompt_tokens": len(tokens),
                  "system_info": llama_cpp.llama_print_system_info().decode(errors="replace")}))
'''


def _spin(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def run(label: str, model: str, *, extra: bool = True, path: str | None = None, policy: str | None = "PASSIVE",
        threads: int, prompt: int, generate: int, repeats: int, busy: int = 0, n_batch: int = 0) -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (path, root, env.get("PYTHONPATH")) if p)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    spinners = []
    if busy:
        stop = time.time() + 900
        spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
        for p in spinners:
            p.start()
    try:
        args = json.dumps({"model": model, "extra": extra, "threads": threads, "prompt": prompt,
                           "generate": generate, "repeats": repeats, "n_batch": n_batch})
        out = subprocess.run([sys.executable, "-c", CHILD, args], env=env, capture_output=True, text=True,
                             timeout=1800)
    finally:
        for p in spinners:
            p.terminate()
    if out.returncode != 0:
        return {"label": label, "error": f"exit {out.returncode}: {out.stderr.strip().splitlines()[-1:]}"}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["label"] = label
    rate = f"   generate {result['gen_tps']:6.1f} tok/s" if generate > 1 else ""  # one token: no rate to speak of
    print(f"{label:<44} prompt {result['prompt_tps']:7.1f} tok/s{rate}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local:qwen2.5-coder-1.5b-instruct", help="local:NAME or a .gguf path")
    parser.add_argument("--native", default=None, help="a folder holding a native build's llama_cpp package")
    parser.add_argument("--prompt", type=int, default=231, help="prompt tokens (default: 231)")
    parser.add_argument("--generate", type=int, default=100, help="generated tokens (default: 100)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats, best kept (default: 2)")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 1,
                        help="spinning processes for the contention runs (0: skip them)")
    parser.add_argument("--batches", default="", help="comma-separated prompt batch sizes to compare (default: none)")
    parser.add_argument("--batch-prompt", type=int, default=2048, help="prompt tokens of the batch runs (2048)")
    args = parser.parse_args()
    from ns_dspy.lms.assets import resolve_lm_asset
    from ns_dspy.machine import cpu_description

    spec = args.model.removeprefix("local:")
    model = str(resolve_lm_asset(spec) or Path(spec).expanduser())
    common = dict(threads=args.threads, prompt=args.prompt, generate=args.generate, repeats=args.repeats)
    print(f"cpu {cpu_description()['model']} ({os.cpu_count()} cores)  model {Path(model).name}  "
          f"threads {args.threads}  prompt {args.prompt}  generate {args.generate}")
    rows = [run("installed (portable), extra buffers, passive", model, **common),
            run("installed, plain weight buffers", model, extra=False, **common)]
    if args.native:
        rows.append(run("native build (-march=native), extra buffers", model, path=args.native, **common))
    if args.busy:
        rows.append(run(f"installed, {args.busy} busy processes, passive", model, busy=args.busy, **common))
        rows.append(run(f"installed, {args.busy} busy processes, libgomp default", model, busy=args.busy,
                        policy=None, **common))
    from ns_dspy.lms.guard import PROMPT_BATCH

    for size in (int(b) for b in args.batches.split(",") if b.strip()):
        rows.append(run(f"installed, prompt batches of {size}", model, n_batch=size,
                        **{**common, "prompt": args.batch_prompt, "generate": 1}))
    by = {r["label"]: r for r in rows if "error" not in r}
    for r in rows:
        if "error" in r:
            print(f"{r['label']}: {r['error']}")
    base = by.get("installed (portable), extra buffers, passive")
    native = next((r for label, r in by.items() if label.startswith("native")), None)
    if base and native:
        print(f"portable/native: prompt {base['prompt_tps'] / native['prompt_tps']:.2f}, "
              f"generate {base['gen_tps'] / native['gen_tps']:.2f}  (target: generate >= 0.8)")
    busy = [r for label, r in by.items() if "busy" in label]
    if len(busy) == 2:
        print(f"under load, passive/default: prompt {busy[0]['prompt_tps'] / busy[1]['prompt_tps']:.2f}, "
              f"generate {busy[0]['gen_tps'] / busy[1]['gen_tps']:.2f}")
    batched = {label: r for label, r in by.items() if "prompt batches" in label}
    ours = batched.get(f"installed, prompt batches of {PROMPT_BATCH}")
    for label, r in batched.items():
        if ours:
            print(f"{label}: prompt {r['prompt_tps'] / ours['prompt_tps']:.2f} x ns-dspy's ({PROMPT_BATCH})")
    if base:
        print("installed build: " + base["system_info"].strip())
    if native:
        print("native build:    " + native["system_info"].strip())


if __name__ == "__main__":
    main()
