"""Put a randomly initialised copy of an offline model's architecture where ns-dspy caches that model, for timing.

    python benchmarks/device/random_subject.py --shape DIR [--name gemma-3-270m] [--seed 0]

``DIR`` holds the model's ``config.json`` and tokenizer files (``save_pretrained`` output without the weights).
The weights are drawn by the model class's own initialisation (seeded) and saved in float32 into
``cache_dir("models") / NAME`` with a ``ns_dspy_source.json`` that says so. Every ns-dspy command that names
``NAME`` then loads this copy.

What it is for: a GPU machine without network and with a small upload limit (the device machines this project is
sometimes lent) cannot fetch the real weights (1 GB), yet speed does not depend on their values - recording,
simulation and LoRA training do the same arithmetic on the same shapes. Figures measured on such a copy are
**timings only**: its activations and predictions mean nothing. Refuses to overwrite a real (non-random) build.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ns_dspy.atomic import atomic_dir, atomic_write_json
from ns_dspy.paths import cache_dir

MARK = "random initialisation (timing only)"


def write_random(shape: Path, name: str, seed: int = 0) -> Path:
    """Write the random copy; returns its folder. Raises SystemExit on a missing shape or a real build there."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not (shape / "config.json").is_file():
        raise SystemExit(f"--shape {shape}: no config.json there; give a save_pretrained folder's config + tokenizer")
    target = cache_dir("models") / name
    source = target / "ns_dspy_source.json"
    if source.exists() and json.loads(source.read_text()).get("weights") != MARK:
        raise SystemExit(f"{target} holds a real build of {name}; set NS_DSPY_CACHE to another folder")
    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(shape)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(shape)
    with atomic_dir(target, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "ns_dspy_source.json", {
            "name": name, "weights": MARK, "seed": seed, "architecture": config.architectures,
            "parameters": sum(p.numel() for p in model.parameters()),
            "description": f"{name}'s shape with random weights: for speed measurements only"})
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=Path, required=True, help="folder with config.json and the tokenizer files")
    ap.add_argument("--name", default="gemma-3-270m", help="the offline model name it stands in for")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    target = write_random(args.shape, args.name, args.seed)
    print(f"random {args.name} -> {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
