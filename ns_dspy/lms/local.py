"""An in-process llama.cpp chat model behind DSPy 3.4's engine contract.

DSPy 3.4 lets ``dspy.LM`` delegate one attempt to an engine object (``dspy.clients.engines.base.Engine``):
``complete(dspy.lm15.Request) -> dspy.lm15.Response``, ``stream(request)`` yielding lm15 stream events, and
``close()``. DSPy keeps everything around the attempt (its cache, retries, history, callbacks, usage tracking)
and asks a canonical engine for one candidate per call, so ``n=3`` is three calls. :class:`LlamaCppEngine`
renders the request with the model's own chat template (llama-cpp-python's ``create_chat_completion``) and
reports the prompt and completion token counts in ``Response.usage``. Build one LM with
:func:`ns_dspy.lms.make_lm` (``local:NAME`` or ``local:/path/model.gguf``) rather than by hand: it is a
:class:`~ns_dspy.lms.local_lm.LocalLM`, which hands DSPy's ``rollout_id`` to the engine as the request's seed.

**An answer is a function of its request.** Every call samples with its own seed, a hash of the engine's seed,
the chat, the request's options (its seed included) and which of ``n`` identical draws it is
(:func:`sample_seed`). So the same request and rollout id give the same answer whatever was asked before in the
process: the same neuron explained alone, after others, resumed, or on another worker of a distributed run (on
the same kind of CPU and build) gets the same answers, and two runs that differ in one agent's program differ only
where that agent's calls do. (llama-cpp-python's own default, one seed chain per model, made each answer depend
on how many calls the process had made before, cached ones not counted.) For the same reason a cached prompt
prefix is reused in whole batches only (:func:`_reuse_whole_batches`).

llama-cpp-python is an optional dependency (``pip install -r requirements/local.txt`` builds it for any x86-64
CPU), imported on first use, and only after :func:`~ns_dspy.lms.guard.check_llama_cpp` has seen a child process
load the model and decode with it: a library that would die with SIGILL becomes one error line, not a crash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .assets import LMError
from .guard import check_llama_cpp, load_kwargs, quiet_openmp, weight_buffers

__all__ = ["LlamaCppEngine", "LlamaCppSettings", "DEFAULT_MAX_TOKENS", "require_llama_cpp", "sample_seed",
           "text_seed"]

log = logging.getLogger(__name__)

PREFIX_CACHE_ENTRIES = 4
"""Prompts whose llama.cpp states are kept for prefix reuse (:class:`PrefixCache`): one per agent, and one more."""

LOOP_SPAN = 32
"""An answer whose last ``LOOP_SPAN`` tokens already occur, verbatim, earlier in it is looping: generation stops
there (:class:`LoopGuard`)."""

DEFAULT_MAX_TOKENS = 512
"""Used when a request sets no ``max_tokens``: without a cap a looping small model runs to the context's end."""

# Request.config knobs that map one to one onto create_chat_completion's arguments.
_DIRECT = ("temperature", "top_p", "top_k", "seed", "frequency_penalty", "presence_penalty")
# llama.cpp-only sampling knobs a caller may pass in Config.extensions.
_EXTENSIONS = frozenset({"min_p", "typical_p", "repeat_penalty", "tfs_z", "mirostat_mode", "mirostat_tau",
                         "mirostat_eta"})
# Knobs this engine cannot honour: refused rather than dropped (lm15's rule for every provider).
_UNSUPPORTED = ("tool_choice", "reasoning", "cache", "service_tier", "user_id", "store", "logprobs",
                "probabilities")
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_call", "function_call": "tool_call"}
INSTALL_HINT = ("the local LM needs llama-cpp-python: pip install -r requirements/local.txt from the ns-dspy "
                "checkout (a build for any x86-64 CPU), or pip install 'ns-dspy[local]'")


def require_llama_cpp() -> None:
    """Raise :class:`LMError` with the install hint unless llama-cpp-python is importable (without importing it)."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        raise LMError(INSTALL_HINT)


def _import_llama():
    quiet_openmp()  # before the library's OpenMP runtime loads
    try:
        from llama_cpp import Llama
    except ImportError as err:
        raise LMError(INSTALL_HINT) from err
    return Llama


@dataclass(frozen=True)
class LlamaCppSettings:
    """How the GGUF is loaded; everything that changes outputs apart from the request itself."""

    model_path: str
    """A GGUF chat model (its chat template is read from the file's metadata)."""
    n_ctx: int = 8192
    """Context window in tokens (prompt + completion)."""
    n_threads: int | None = None
    """CPU threads; None means ``os.cpu_count()``. llama.cpp's OpenMP threads sleep at barriers
    (``OMP_WAIT_POLICY=PASSIVE`` unless set) so they do not starve torch's in the same process."""
    seed: int = 0
    """Seed of the sampler's generator at load. Requests without their own seed continue that generator, so
    repeated calls (DSPy's ``n``) give different samples while a fresh process replays the same sequence."""
    n_gpu_layers: int = 0
    """Layers offloaded to a GPU when llama.cpp was built with one (-1: all)."""
    chat_format: str | None = None
    """Override the chat template by llama-cpp-python's format name; None uses the GGUF's own template."""

    def __post_init__(self):
        if self.n_ctx < 256:
            raise ValueError(f"n_ctx must be at least 256, got {self.n_ctx}")
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError(f"n_threads must be positive, got {self.n_threads}")


class LlamaCppEngine:
    """A DSPy 3.4 engine running a GGUF chat model in this process.

    Contract: thread-safe (one lock serialises every use of the llama.cpp context, which is not re-entrant; DSPy
    may call from its parallel executor's threads); the model loads on the first call, not at construction;
    ``close()`` frees it and a later call loads it again. Request options the engine cannot honour (tools,
    logprobs, provider prompt caching, ...) raise ``dspy.lm15.UnsupportedFeatureError``; a prompt longer than
    the context raises ``dspy.lm15.ContextLengthError``.
    """

    # Capability hints DSPy's adapters read from a custom engine (dspy.clients.capabilities). With them,
    # JSONAdapter (ChatAdapter's fallback) sends the signature's JSON schema, which llama.cpp enforces with a
    # grammar: even a small model then returns parseable fields.
    supports_response_schema = True
    supports_function_calling = False
    supports_reasoning = False
    supported_params = frozenset({"max_tokens", "temperature", "top_p", "top_k", "stop", "seed", "frequency_penalty",
                                  "presence_penalty", "response_format"})

    def __init__(self, model_path: str | Path, *, n_ctx: int = 8192, n_threads: int | None = None, seed: int = 0,
                 n_gpu_layers: int = 0, chat_format: str | None = None, prefix_cache: int = PREFIX_CACHE_ENTRIES,
                 loop_span: int = LOOP_SPAN):
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise LMError(f"no GGUF file at {path}: give local:NAME of a registered LM or an existing .gguf path")
        require_llama_cpp()  # fail at construction with the install hint, not inside DSPy's call wrapper
        self.settings = LlamaCppSettings(str(path.resolve()), n_ctx=n_ctx, n_threads=n_threads, seed=seed,
                                         n_gpu_layers=n_gpu_layers, chat_format=chat_format)
        if prefix_cache < 0:
            raise ValueError(f"prefix_cache must be >= 0 prompts, got {prefix_cache}")
        self.prefix_cache = prefix_cache
        """How many recent prompts' llama.cpp states are kept for prefix reuse (:class:`PrefixCache`; 0: none)."""
        if loop_span < 0 or 0 < loop_span < 8:
            raise ValueError(f"loop_span must be 0 (off) or at least 8 tokens, got {loop_span}")
        self.loop_span = loop_span
        """Stop an answer once its last ``loop_span`` tokens repeat an earlier span of it (:class:`LoopGuard`;
        0: never)."""
        self.loops_stopped = 0
        """Answers this engine stopped because they looped."""
        self.prompt_evaluated = 0
        """Prompt tokens llama.cpp evaluated over all calls: a prompt's tokens less the prefix it reused (from the
        previous prompt or the :class:`PrefixCache`); what prompt processing cost, as against the tokens sent."""
        self._first_eval: int | None = None
        self._llama = None
        self._cache: PrefixCache | None = None
        self._lock = threading.Lock()
        self._draws = threading.local()
        self.load_seconds: float | None = None

    def __repr__(self) -> str:
        return f"LlamaCppEngine({Path(self.settings.model_path).name!r}, n_ctx={self.settings.n_ctx})"

    # --- DSPy engine contract -------------------------------------------------------------------------------
    def complete(self, request) -> Any:
        """One chat completion for a ``dspy.lm15.Request``; returns a ``dspy.lm15.Response``."""
        from dspy.clients.engines.base import validate_request

        validate_request(request)
        messages = _chat_messages(request)
        options = _options(request)
        options["seed"] = sample_seed(self.settings.seed, messages, options, self._draw(request))
        with self._lock:
            llama = self._load()
            self._first_eval = None
            start = time.perf_counter()
            try:
                out = self._answer(llama, messages, options)
            except ValueError as err:
                if "exceed context window" in str(err):
                    from dspy.lm15 import ContextLengthError

                    raise ContextLengthError(f"{err} (raise n_ctx or shorten the prompt)", provider="local") from err
                raise
            seconds = time.perf_counter() - start
            evaluated = self._first_eval or 0
            self.prompt_evaluated += evaluated
        usage = out.get("usage") or {}
        log.debug("local LM: %s prompt (%d evaluated, %d from the prefix cache) + %s completion tokens in %.1f s",
                  usage.get("prompt_tokens"), evaluated, self._cache.last_reused if self._cache else 0,
                  usage.get("completion_tokens"), seconds)
        return _response(request.model, out)

    def stream(self, request) -> Iterator[Any]:
        """The completed response replayed as lm15 stream events (llama.cpp reports usage only when done)."""
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        with self._lock:
            llama, self._llama, self._cache = self._llama, None, None
        if llama is not None:
            llama.close()

    # --- saving a program with this LM (dspy.LM.dump_state calls these) ---------------------------------------
    def dump_state(self) -> dict:
        return asdict(self.settings)

    @classmethod
    def load_state(cls, state: dict) -> "LlamaCppEngine":
        state = dict(state)
        return cls(state.pop("model_path"), **state)

    def check(self) -> dict:
        """Raise :class:`LMError` (one line) unless the llama.cpp library loads this model and decodes on this
        CPU, checked in a child process (:func:`~ns_dspy.lms.guard.check_llama_cpp`; cached after a pass)."""
        s = self.settings
        return check_llama_cpp(s.model_path, n_ctx=s.n_ctx, n_threads=self._threads(), n_gpu_layers=s.n_gpu_layers,
                               chat_format=s.chat_format)

    # --- internals ----------------------------------------------------------------------------------------
    def _draw(self, request) -> int:
        """Which draw of the same request object this call is: DSPy asks a canonical engine for ``n`` candidates
        as ``n`` calls with one request object, one after another in the calling thread."""
        last = getattr(self._draws, "last", None)
        count = last[1] + 1 if last is not None and last[0] is request else 0
        self._draws.last = (request, count)
        return count

    def _answer(self, llama, messages: list[dict], options: dict) -> dict:
        """One chat completion of the loaded ``llama`` (the caller holds the lock), stopped by a
        :class:`LoopGuard` when ``loop_span`` is set and the answer loops; the repeated span is then dropped."""
        guard = LoopGuard(self.loop_span) if self.loop_span else None
        out = _chat(llama, messages, options, guard)
        if guard is not None and guard.fired:
            self.loops_stopped += 1
            _trim_repeat(out, llama.detokenize(guard.tail.tolist()).decode("utf-8", "ignore"))
            log.info("local LM: stopped a looping answer after %s tokens",
                     (out.get("usage") or {}).get("completion_tokens"))
        return out

    def _threads(self) -> int:
        return self.settings.n_threads or os.cpu_count() or 1

    def _load(self):
        if self._llama is None:
            s = self.settings
            verdict = self.check()
            Llama = _import_llama()
            _same_library(verdict)
            start = time.perf_counter()
            with weight_buffers(verdict.get("extra_buffers", True)):
                self._llama = Llama(model_path=s.model_path,
                                    **load_kwargs(s.n_ctx, self._threads(), s.seed, s.n_gpu_layers, s.chat_format))
            self.load_seconds = time.perf_counter() - start
            self._count_prompt_evaluation(self._llama)
            _reuse_whole_batches(self._llama)
            if self.prefix_cache:
                self._cache = PrefixCache(self._llama, self.prefix_cache)
                self._llama.set_cache(self._cache)
            log.info("loaded %s in %.1f s (n_ctx=%d)", Path(s.model_path).name, self.load_seconds, s.n_ctx)
        return self._llama

    def _count_prompt_evaluation(self, llama) -> None:
        """Count the tokens of each call's first ``llama.eval``: llama-cpp-python's ``generate`` evaluates what is
        left of the prompt after the prefix it reuses in one call, then each sampled token in a call of its own."""
        evaluate = getattr(llama, "eval", None)
        if evaluate is None:  # a stand-in without llama.cpp's evaluation
            return

        def counted(tokens, evaluate=evaluate):
            if self._first_eval is None:
                self._first_eval = len(tokens)
            return evaluate(tokens)

        llama.eval = counted


def sample_seed(engine_seed: int, messages: list[dict], options: dict, draw: int = 0) -> int:
    """The llama.cpp sampler seed of one call: a hash of the engine's seed, the chat messages, the call's options
    (the request's own seed among them) and ``draw``, the index among ``n`` draws of one request. Below 2**31, so
    never llama.cpp's "random seed" value."""
    return text_seed(json.dumps([engine_seed, messages, options, draw], sort_keys=True, default=str,
                                ensure_ascii=False))


def text_seed(text: str) -> int:
    """A seed below 2**31 (never llama.cpp's "random seed" value) that ``text`` alone determines."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little") & 0x7FFFFFFF


def _reusable(shared: int, prompt: int, block: int) -> int:
    """Of a ``shared``-token prefix of a ``prompt``-token prompt, what is reused: whole ``block``-token batches, and
    never the prompt's last token (its logits are what the answer starts from)."""
    shared = min(shared, prompt - 1)
    return shared // block * block if block else shared


def _reuse_whole_batches(llama) -> None:
    """Make ``llama`` reuse an earlier prompt's prefix only up to a multiple of its batch size, so that every
    prompt is evaluated in the same batches as from an empty context (``[0, b)``, ``[b, 2b)``, ...) whatever was
    evaluated before it. llama.cpp's arithmetic depends on how the tokens are batched (a prefix reused at 700
    tokens evaluates the rest from 700, where an empty context's batches of 128 start at 640), and on
    Qwen2.5-Coder-1.5B sampling at temperature 0.7 that was enough to change an answer from its fourth token on
    (the same request and seed, with and without another neuron's call before it). A prefix reused this way holds
    the same numbers as one evaluated anew, because the prompt before it was evaluated in the same whole batches;
    at most ``b - 1`` tokens a call are evaluated again.

    Only the part of the context evaluated as a prompt is reused: the tokens an answer generated were evaluated one
    at a time, so a prompt that continues an earlier prompt and its answer verbatim (a multi-turn chat) reuses
    the earlier prompt's whole batches and evaluates the answer's tokens again in batches. ``llama.batched`` is
    the number of leading context tokens evaluated as a prompt; a state loaded from a :class:`PrefixCache` brings
    its own (a state from elsewhere, none: nothing of it is reused)."""
    generate = getattr(llama, "generate", None)
    block = getattr(llama, "n_batch", 0)
    if generate is None or not block:  # a stand-in without llama.cpp's generation loop
        return
    load_state = llama.load_state
    llama.batched = 0

    def aligned(tokens, *args, **kwargs):
        tokens = list(tokens)
        if kwargs.get("reset", True):
            if llama.n_tokens > 0:
                from llama_cpp.llama import Llama

                shared = min(Llama.longest_token_prefix(llama._input_ids, tokens), llama.batched)
                keep = _reusable(shared, len(tokens), block)
                if keep < llama.n_tokens and not (keep and llama._ctx.kv_cache_seq_rm(-1, keep, -1)):
                    keep = 0
                llama.n_tokens = keep
            llama.batched = len(tokens)  # evaluated from a whole batch on, in whole batches but the last
        return generate(tokens, *args, **kwargs)

    def loaded(state) -> None:
        load_state(state)
        llama.batched = getattr(state, "batched", None) or 0

    llama.generate = aligned
    llama.load_state = loaded


class LoopGuard:
    """A llama-cpp-python stopping criterion that ends a looping answer: once the answer's last ``span`` tokens
    occur, verbatim, earlier in the answer (at any earlier start), the model is repeating itself (a small model
    looping on a list, or on a sentence, until ``max_tokens``); what is left of the budget would only add copies.
    Answers that never repeat a span that long run exactly as without it. The first call sees the prompt alone
    (the answer starts after it); ``tail`` is the repeated span when it fired."""

    def __init__(self, span: int = LOOP_SPAN):
        self.span = span
        self.start: int | None = None
        self.fired = False
        self.tail = None

    def __call__(self, input_ids, logits) -> bool:
        import numpy as np

        if self.start is None:
            self.start = len(input_ids)
            return False
        out = np.asarray(input_ids[self.start:])
        if len(out) <= self.span:
            return False
        tail = out[-self.span:]
        # every earlier start, overlapping the tail or not: a loop of period p is caught after span + p tokens
        earlier = np.lib.stride_tricks.sliding_window_view(out[:-1], self.span)
        if (earlier == tail).all(axis=1).any():
            self.fired, self.tail = True, tail
        return self.fired


def _chat(llama, messages: list[dict], options: dict, guard: LoopGuard | None) -> dict:
    """``llama.create_chat_completion``, with ``guard`` added to the stopping criteria the chat handler passes on
    to ``create_completion`` (``create_chat_completion`` takes none itself)."""
    plain = getattr(llama, "create_completion", None)
    if guard is None or plain is None:  # no guard, or a stand-in that completes chats by itself
        return llama.create_chat_completion(messages=messages, **options)
    from llama_cpp import StoppingCriteriaList

    def create_completion(*args, stopping_criteria=None, **kw):
        return plain(*args, stopping_criteria=StoppingCriteriaList([*(stopping_criteria or []), guard]), **kw)

    llama.create_completion = create_completion
    try:
        return llama.create_chat_completion(messages=messages, **options)
    finally:
        del llama.create_completion


def _trim_repeat(out: dict, tail: str) -> None:
    """Drop the repeated span a :class:`LoopGuard` stopped on from the end of the answer's text."""
    message = out["choices"][0]["message"]
    text = message.get("content") or ""
    if tail.strip() and text.endswith(tail):
        message["content"] = text[:-len(tail)].rstrip()


class PrefixCache:
    """The llama.cpp states of the last ``entries`` prompts, so that a prompt sharing a long prefix with one of
    them evaluates only the rest: an agent's calls share its instructions and demos (a compiled program's demos
    are thousands of tokens), and one neuron's calls share its exemplars, but the agents' calls alternate, so
    llama.cpp's own reuse of the previous prompt alone misses them. llama-cpp-python's ``Llama.set_cache``
    protocol: ``cache[tokens]`` is the state whose tokens share the longest prefix with ``tokens`` (KeyError if
    none), ``cache[tokens] = state`` after each completion. The new state replaces the one matched (it holds
    all they share), so each line of prompts (an agent's calls) keeps one entry; least recently used lines
    are dropped.

    Two things differ from llama-cpp-python's own RAM cache: a state is kept without the logits history
    llama-cpp-python copies into it (up to n_batch x vocabulary floats, ~300 MB for Qwen2.5; sampling reads
    llama.cpp's own logits, and the history is only read for logprobs, which this engine refuses), and a loaded
    state takes the sampler seed the model has now, so seeded sampling goes on exactly as without the cache
    (the saved seed would replay earlier samples)."""

    def __init__(self, llama, entries: int):
        self._llama, self.entries = llama, entries
        self._states: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._matched: tuple[int, ...] | None = None
        self.hits = self.reused_tokens = self.last_reused = 0

    def __bool__(self) -> bool:  # llama-cpp-python tests ``if self.cache``
        return True

    def _longest(self, tokens: Sequence[int]) -> tuple[tuple[int, ...] | None, int]:
        from llama_cpp.llama import Llama

        best, length = None, 0
        for key in self._states:
            n = Llama.longest_token_prefix(key, tokens)
            if n > length:
                best, length = key, n
        return best, length

    def __getitem__(self, tokens: Sequence[int]):
        from llama_cpp.llama import Llama, LlamaState

        key, length = self._longest(tokens)
        self.last_reused = 0
        # the same line of prompts when they share at least half of the match (a system prompt's few tokens do not)
        self._matched = key if key is not None and 2 * length >= len(key) else None
        if key is None:
            raise KeyError("no cached prefix")
        self._states.move_to_end(key)
        state = self._states[key]
        current = self._llama._input_ids  # the tokens evaluated now (input_ids is the whole n_ctx buffer)
        if length > Llama.longest_token_prefix(current, tokens):  # the test llama-cpp-python makes before loading a state
            batched = getattr(state, "batched", None)  # None: the engine does not align (a stand-in)
            usable = _reusable(length if batched is None else min(length, batched), len(tokens),
                               getattr(self._llama, "n_batch", 0))
            self.hits += 1
            self.reused_tokens += usable
            self.last_reused = usable
        loaded = LlamaState(input_ids=state.input_ids, scores=state.scores, n_tokens=state.n_tokens,
                            llama_state=state.llama_state, llama_state_size=state.llama_state_size,
                            seed=self._llama._seed)
        loaded.batched = getattr(state, "batched", None)  # how much of it was evaluated as a prompt
        return loaded

    def __contains__(self, tokens: Sequence[int]) -> bool:
        return self._longest(tokens)[0] is not None

    def __setitem__(self, tokens: Sequence[int], state) -> None:
        from llama_cpp.llama import LlamaState

        key = tuple(tokens)
        self._states.pop(key, None)
        if self._matched is not None:  # this state holds what it shares with the one matched: one entry per line
            self._states.pop(self._matched, None)
            self._matched = None
        # the last row only: load_state broadcasts it into the rows it fills, which sampling does not read
        self._states[key] = LlamaState(input_ids=state.input_ids, scores=state.scores[-1:].copy(),
                                       n_tokens=state.n_tokens, llama_state=state.llama_state,
                                       llama_state_size=state.llama_state_size, seed=state.seed)
        self._states[key].batched = getattr(self._llama, "batched", None)  # the prompt's part (the rest: its answer)
        while len(self._states) > self.entries:
            self._states.popitem(last=False)


def _same_library(verdict: dict) -> None:
    """Refuse to load when the ``llama_cpp`` this process imported is not the library the guard checked (one
    imported earlier from elsewhere on the path)."""
    import sys

    checked = (verdict.get("library") or {}).get("folder")
    module = sys.modules.get("llama_cpp")
    if checked and module is not None and getattr(module, "__file__", None):
        loaded = Path(module.__file__).resolve().parent
        if loaded != Path(checked).resolve():
            raise LMError(f"llama_cpp was imported from {loaded} but the decode check ran {checked}: start a "
                          "fresh process, with one llama-cpp-python installed")


def _text(parts) -> str:
    from dspy.lm15 import TextPart

    if isinstance(parts, str):
        return parts
    if not all(isinstance(p, TextPart) for p in parts):
        from dspy.lm15 import UnsupportedFeatureError

        kinds = sorted({type(p).__name__ for p in parts if not isinstance(p, TextPart)})
        raise UnsupportedFeatureError(f"the local LM takes text only, got {', '.join(kinds)}", provider="local")
    return "\n".join(p.text for p in parts)


def _chat_messages(request) -> list[dict]:
    """OpenAI-style messages for the chat template; lm15's ``developer`` role is a system message here."""
    from dspy.lm15 import UnsupportedFeatureError

    if request.tools:
        raise UnsupportedFeatureError("the local LM does not call tools", provider="local")
    messages = [] if request.system is None else [{"role": "system", "content": _text(request.system)}]
    for m in request.messages:
        if m.role == "tool":
            raise UnsupportedFeatureError("the local LM does not take tool results", provider="local")
        messages.append({"role": "system" if m.role == "developer" else m.role, "content": _text(m.parts)})
    return messages


def _options(request) -> dict:
    from dspy.lm15 import UnsupportedFeatureError

    config = request.config
    refused = [name for name in _UNSUPPORTED if getattr(config, name) is not None]
    unknown = sorted(set(config.extensions or {}) - _EXTENSIONS)
    if refused or unknown:
        raise UnsupportedFeatureError(f"the local LM cannot honour {', '.join(refused + unknown)}",
                                      provider="local")
    options: dict[str, Any] = {"max_tokens": config.max_tokens or DEFAULT_MAX_TOKENS}
    options.update({name: getattr(config, name) for name in _DIRECT if getattr(config, name) is not None})
    options.update(config.extensions or {})
    if config.stop:
        options["stop"] = list(config.stop)
    if config.response_format is not None:
        options["response_format"] = _response_format(config.response_format)
    return options


def _response_format(fmt: dict) -> dict:
    """lm15's OpenAI-shaped response_format -> llama-cpp-python's (a JSON grammar, optionally from a schema)."""
    kind = fmt.get("type")
    if kind == "json_schema":  # lm15 keeps the schema at the top level; OpenAI's wire nests it in "json_schema"
        schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            from dspy.lm15 import InvalidRequestError

            raise InvalidRequestError("response_format json_schema carries no schema", provider="local")
        return {"type": "json_object", "schema": schema}
    if kind in ("json_object", "text"):
        return {"type": kind}
    from dspy.lm15 import UnsupportedFeatureError

    raise UnsupportedFeatureError(f"the local LM cannot honour response_format type {kind!r}", provider="local")


def _response(model: str, out: dict):
    from dspy.lm15 import Message, Response, TextPart, Usage

    choice = out["choices"][0]
    usage = out.get("usage") or {}
    return Response(
        id=out.get("id") or f"local-{uuid.uuid4().hex[:12]}",
        model=model,
        message=Message.assistant([TextPart(choice["message"].get("content") or "")]),
        finish_reason=_FINISH.get(choice.get("finish_reason") or "stop", "stop"),
        usage=Usage(input_tokens=usage.get("prompt_tokens"), output_tokens=usage.get("completion_tokens")),
    )
