"""Export a trained adapter folder where ns-dspy loads it: weights cast (bf16 halves the size), the
evaluation summary stored in the manifest, and the result checked by loading it onto its base model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ns_dspy.atomic import atomic_dir, atomic_write_json
from ns_dspy.errors import ConfigError
from ns_dspy.simulators.finetuned import FinetunedSimulator
from ns_dspy.simulators.finetuned_adapter import ADAPTER_FILE, HEAD_FILE, MANIFEST, read_adapter_manifest

__all__ = ["export"]


def export(adapter: str | Path, to: str | Path, *, dtype: str = "bfloat16", evaluation: str | Path | None = None,
           overwrite: bool = False, verify: bool = True) -> Path:
    """Copy ``adapter`` (a folder written by training) to ``to`` with LoRA weights in ``dtype``; with
    ``evaluation`` (an ``eval --out`` JSON) its summary goes into the manifest under ``"evaluation"``."""
    from safetensors.torch import load_file, save_file

    src = Path(adapter)
    manifest = read_adapter_manifest(src)
    if dtype not in ("bfloat16", "float16", "float32"):
        raise ConfigError(f"--dtype must be bfloat16, float16 or float32, not {dtype!r}")
    if evaluation:
        try:
            report = json.loads(Path(evaluation).read_text())
            manifest["evaluation"] = {"data": report["data"], "split": report["split"], "summary": report["summary"]}
        except (FileNotFoundError, json.JSONDecodeError, KeyError) as err:
            raise ConfigError(f"{evaluation} is not an eval report ({type(err).__name__}): write one with eval --out") from None
    weights = {k: v.to(getattr(torch, dtype)).contiguous() for k, v in load_file(str(src / ADAPTER_FILE)).items()}
    try:
        with atomic_dir(to, overwrite=overwrite) as tmp:
            save_file(weights, str(tmp / ADAPTER_FILE))
            shutil.copyfile(src / "adapter_config.json", tmp / "adapter_config.json")
            shutil.copyfile(src / HEAD_FILE, tmp / HEAD_FILE)
            atomic_write_json(tmp / MANIFEST, manifest)
    except FileExistsError:
        raise ConfigError(f"{to} already exists: choose another folder or pass --overwrite") from None
    if verify:
        FinetunedSimulator.from_pretrained(to)
    return Path(to)
