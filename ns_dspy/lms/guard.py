"""Check, in a child process, that the installed llama.cpp library decodes on this CPU before this process uses it.

llama-cpp-python is a source build. A build made for another CPU, or a miscompiled one (GCC 12's AMX tile
configuration on Sapphire Rapids and later: ``tilezero`` faults for prompts of more than ~10 tokens), dies with
SIGILL inside native code, which no ``except`` can catch: the whole process, a long run or a test session, goes
down. So before the first in-process load, :func:`check_llama_cpp` loads the model in a child process with the
engine's own load settings, decodes a prompt of some 60 tokens and samples one more. A child killed by a signal
or failing otherwise becomes one :class:`~ns_dspy.lms.assets.LMError` line that says what to do; the parent never
loads the library.

If the child dies with llama.cpp's extra weight buffers (the AMX and repacked layouts, where a native build on an
AMX CPU faults), the check is repeated with them off; when that passes, the engine loads with them off too and
a warning says so.

A passing verdict is cached per library build (the sha256 of its shared libraries), CPU (model name and flags)
and load settings, in ``$NS_DSPY_CACHE/lms/checks/``; a failing one is never cached, so a fixed install is checked
again at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..atomic import atomic_write_json
from ..machine import cpu_description
from ..paths import cache_dir
from .assets import LMError

log = logging.getLogger(__name__)

__all__ = ["check_llama_cpp", "library_fingerprint", "REINSTALL", "PROBE_PROMPT",
           "load_kwargs", "quiet_openmp", "weight_buffers"]

REINSTALL = ("reinstall it for any x86-64 CPU with: pip install --no-cache-dir --force-reinstall "
             "--no-deps -r requirements/local.txt (from the ns-dspy checkout), or use an endpoint LM "
             "(--lm endpoint:URL@MODEL)")
"""The fix named in every failure line."""

PROBE_PROMPT = ("Explain in one sentence what this Python function does: def add(a, b): return a + b. "
                "The neuron fires on commas, brackets and the word return in code; list three such tokens.")
"""About 60 tokens: long enough for the batched matrix kernels (the AMX fault needs more than ~10)."""

_TIMEOUT_S = 600.0


def quiet_openmp() -> None:
    """OpenMP threads that sleep instead of spinning at barriers (unless the user set a policy). llama.cpp's
    OpenMP runtime reads this once, when the library loads: call it before ``import llama_cpp``. torch carries its
    own OpenMP runtime, loaded earlier, which this does not change."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


PROMPT_BATCH = 128
"""Prompt tokens llama.cpp evaluates per batch. The engine reuses a cached prefix only in whole batches (so that
answers do not depend on earlier calls, :func:`ns_dspy.lms.local._reuse_whole_batches`), which re-evaluates up
to ``PROMPT_BATCH - 1`` tokens a call: 128 rather than llama-cpp-python's 512 keeps that small at about the same
speed (`python benchmarks/llm.py --busy 0 --batches 512,128,64 --repeats 1`, Qwen2.5-Coder-1.5B Q4_K_M, a
2,048-token prompt, 2 threads, AMD EPYC with AVX-512, 2026-12-06: 47.2 tok/s in batches of 512, 45.9 of 128,
43.4 of 64)."""


def load_kwargs(n_ctx: int, n_threads: int, seed: int, n_gpu_layers: int, chat_format: str | None) -> dict:
    """``llama_cpp.Llama`` arguments shared by the engine and the probe, so the probe checks what will run."""
    return {"n_ctx": n_ctx, "n_threads": n_threads, "n_threads_batch": n_threads, "seed": seed,
            "n_gpu_layers": n_gpu_layers, "chat_format": chat_format, "n_batch": PROMPT_BATCH, "verbose": False}


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def weight_buffers(extra: bool):
    """Within the block, ``llama_cpp.Llama(...)`` loads weights with llama.cpp's extra buffer types (repacked
    and AMX layouts) on or off (``llama_model_params.use_extra_bufts``, which llama-cpp-python 0.3.36 does not
    expose as an argument). Off is the fallback for a native build on an AMX CPU, whose AMX kernels fault when
    GCC 12 compiled them (a wheel pip cached from such a build may be what is installed)."""
    if extra:
        yield
        return
    import llama_cpp.llama_cpp as lib

    with _PARAMS_LOCK:
        original = lib.llama_model_default_params

        def plain():
            params = original()
            if hasattr(params, "use_extra_bufts"):
                params.use_extra_bufts = False
            return params

        lib.llama_model_default_params = plain
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def _package_dir() -> Path | None:
    """llama_cpp's package folder on ``sys.path`` (found without importing it or trusting ``sys.modules``)."""
    spec = importlib.machinery.PathFinder.find_spec("llama_cpp", sys.path)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def library_fingerprint() -> dict:
    """Version, folder and sha256 over the shared libraries of the llama_cpp package on ``sys.path``."""
    folder = _package_dir()
    if folder is None:
        raise LMError("the local LM needs llama-cpp-python: pip install torch==2.13.0 -r requirements/local.txt "
                      "(from the ns-dspy checkout)")
    digest, libs = hashlib.sha256(), []
    for lib in sorted(folder.rglob("*.so*")) + sorted(folder.rglob("*.dylib")) + sorted(folder.rglob("*.dll")):
        libs.append(lib.name)
        digest.update(lib.name.encode())
        with open(lib, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    version = None
    init = folder / "__init__.py"
    if init.is_file():
        for line in init.read_text(errors="replace").splitlines():
            if line.startswith("__version__"):
                version = line.split("=", 1)[1].strip().strip("\"'")
    return {"version": version, "folder": str(folder), "libraries": libs, "sha256": digest.hexdigest()}


def _verdict_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir("lms", "checks") / f"{digest}.json"


def check_llama_cpp(model_path: str | Path, *, n_ctx: int = 2048, n_threads: int | None = None,
                    n_gpu_layers: int = 0, chat_format: str | None = None, timeout: float = _TIMEOUT_S) -> dict:
    """Raise :class:`LMError` (one line) unless a child process can load ``model_path`` with this library and
    decode on this CPU; returns the verdict (cached after the first pass)."""
    library = library_fingerprint()
    cpu = cpu_description()
    threads = n_threads or os.cpu_count() or 1
    settings = {"n_threads": threads, "n_gpu_layers": n_gpu_layers, "chat_format": chat_format}
    key = {"library": library["sha256"], "cpu": cpu, "settings": settings,
           "model": _model_key(Path(model_path)), "python": sys.version.split()[0]}
    path = _verdict_path(key)
    if path.is_file():
        try:
            verdict = json.loads(path.read_text())
            if verdict.get("ok") and verdict.get("key") == key:
                return verdict
        except (OSError, ValueError):
            pass  # an unreadable verdict is checked again
    probe = dict(n_ctx=min(n_ctx, 2048), n_threads=threads, n_gpu_layers=n_gpu_layers, chat_format=chat_format,
                 timeout=timeout)
    try:
        verdict = _probe(Path(model_path), library, extra_buffers=True, **probe)
    except _Crashed as crash:  # a native build's AMX path: retry with plain weight buffers
        try:
            verdict = _probe(Path(model_path), library, extra_buffers=False, **probe)
        except _Crashed:
            raise LMError(str(crash)) from None
        verdict["note"] = (f"{crash.signal} with llama.cpp's extra weight buffers (AMX or repacked layouts); "
                           "runs with them off, slower at prompt processing: reinstall for a faster build: "
                           + REINSTALL.split(": ", 1)[-1])
        log.warning("llama.cpp: %s", verdict["note"])
    verdict["key"] = key
    atomic_write_json(path, verdict)
    return verdict


def _model_key(path: Path) -> dict:
    try:
        stat = path.stat()
    except OSError:
        raise LMError(f"no GGUF file at {path}: give local:NAME of a registered LM or an existing .gguf path") \
            from None
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class _Crashed(LMError):
    """The probe's child process was killed by a signal (the message is the one-line error)."""

    def __init__(self, message: str, signal_name: str):
        super().__init__(message)
        self.signal = signal_name


def _probe(model: Path, library: dict, *, extra_buffers: bool, n_ctx: int, n_threads: int, n_gpu_layers: int,
           chat_format: str | None, timeout: float) -> dict:
    where = f"llama-cpp-python {library['version'] or '?'} at {library['folder']}"
    args = json.dumps({"model": str(model), "n_ctx": n_ctx, "n_threads": n_threads, "n_gpu_layers": n_gpu_layers,
                       "chat_format": chat_format, "extra_buffers": extra_buffers})
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the child imports what this process would
    quiet = dict(env)
    quiet.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "ns_dspy.lms.guard", args], env=quiet, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise LMError(f"{where} did not decode a 60-token test prompt within {timeout:.0f} s on this CPU: "
                      f"{REINSTALL}") from None
    seconds = time.perf_counter() - start
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        raise _Crashed(f"{where} crashed with {name} decoding a test prompt on this CPU "
                       f"({cpu_description()['model']}): {REINSTALL}", name)
    if done.returncode != 0:
        last = next((line for line in reversed(done.stderr.strip().splitlines()) if line.strip()), "no message")
        raise LMError(f"{where} could not load {model.name} and decode a test prompt ({last.strip()[:200]}): "
                      f"{REINSTALL}")
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise LMError(f"{where}: the decode check printed no result: {REINSTALL}") from None
    return {"ok": True, "library": library, "extra_buffers": extra_buffers, "seconds": round(seconds, 2), **result}


def _child(args: dict) -> None:
    """The probe itself (run as ``python -m ns_dspy.lms.guard JSON``): load, decode the prompt, sample a token."""
    quiet_openmp()
    from llama_cpp import Llama

    start = time.perf_counter()
    with weight_buffers(args["extra_buffers"]):
        llama = Llama(model_path=args["model"], **load_kwargs(args["n_ctx"], args["n_threads"], 0,
                                                              args["n_gpu_layers"], args["chat_format"]))
    loaded = time.perf_counter()
    tokens = llama.tokenize(PROBE_PROMPT.encode())
    llama.eval(tokens)
    evaluated = time.perf_counter()
    next_token = llama.sample(temp=0.0)
    llama.close()
    info = ""
    try:
        import llama_cpp

        info = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    except Exception:  # noqa: BLE001 - informative only
        pass
    print(json.dumps({"prompt_tokens": len(tokens), "next_token": int(next_token),
                      "load_seconds": round(loaded - start, 2),
                      "prompt_tokens_per_second": round(len(tokens) / max(evaluated - loaded, 1e-9), 1),
                      "system_info": info}))


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
