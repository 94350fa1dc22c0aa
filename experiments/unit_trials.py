"""What the trials on ``simulator_training``'s held-out units share: their command lines' checks and simulator.

``expanded_reading.py`` and ``membership_prior.py`` read one split of a ``build-data`` folder, score its units of
some families with a simulator and keep their results in ``--out OUT.json``, which a rerun resumes from.
:func:`trial_units` makes their checks, each a one-line error before anything is loaded or written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from simulator_training.data import read_units


def trial_units(data: Path, split: str, out: Path, families: str, settings: dict) -> tuple[list[dict], set[str]]:
    """The units of ``data``'s ``split`` and the set of ``families`` (comma-separated) asked for, once ``data``
    holds the split and a unit of those families, ``out`` ends in .json, and a results file already at ``out``
    was made with these ``settings`` (a resume under others would mix rows)."""
    if not (data / f"{split}.jsonl").is_file():
        sys.exit(f"error: no {split}.jsonl in {data}: give a folder written by ns-dspy-train-simulator build-data")
    if out.suffix != ".json":
        sys.exit(f"error: --out must end in .json, got {out}")
    made_with = json.loads(out.read_text()).get("settings") if out.exists() else settings
    if made_with != settings:
        sys.exit(f"error: {out} was made with other settings ({made_with}): rerun with those, or give another --out")
    units = read_units(data, split)
    wanted = set(families.split(","))
    if not any(u["family"] in wanted for u in units):
        sys.exit(f"error: no unit of the families {families} in {data}: name families the data holds, "
                 f"e.g. {', '.join(sorted({u['family'] for u in units}))}")
    return units, wanted


def trial_simulator(spec: str, dtype: str):
    """The simulator ``spec``, a fine-tuned one in ``dtype``."""
    from ns_dspy.simulators.base import build_simulator

    return build_simulator(spec, **({"dtype": dtype} if spec.startswith("finetuned") else {}))
