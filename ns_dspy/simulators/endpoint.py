"""Simulation through an OpenAI-compatible server (vLLM, llama-cpp-python's server, ...).

The server scores the same all-at-once prompt as the local prompted simulator (:mod:`.prompt`): the whole prompt
is sent to the legacy ``/completions`` endpoint and the server returns, for every prompt token, the top
log-probabilities of what the model expected there. At each slot (the position right after a
``token<TAB>``) the prompt holds "unknown", but the top logprobs at that position tell which bin "0".."10" the
model expected; their expected value is the prediction.

The server tokenizes the prompt itself, so its tokens are aligned with the prompt by text
(:func:`~ns_dspy.simulators.align.locate_tokens`): this is why exemplars imported from any tokenizer work. Two
response styles are read:

``echo`` (default)
    OpenAI legacy completions with ``echo=True, logprobs=K``: ``choices[0].logprobs`` holds ``tokens``,
    ``text_offset``, ``token_logprobs`` and ``top_logprobs`` (one ``{token text: logprob}`` per prompt token,
    the first ``null``). Served by vLLM and llama-cpp-python's server; llama.cpp's ``llama-server`` returns
    logprobs of generated tokens only and is rejected with a clear error. llama-cpp-python's server (0.3.36)
    sorts the whole vocabulary in Python for every echoed token: ~0.1 s per prompt token with a 49k vocabulary,
    ~0.7 s with Gemma's 262k on 2 CPU cores, so one simulation prompt of ~200 tokens may outlast ``timeout``.
    Started with ``--logits_all false`` it refuses logprobs (HTTP 500); that is one error line, not retried.
``vllm``
    vLLM's own ``prompt_logprobs=K`` with ``return_token_ids=True`` (vLLM's ``CompletionResponseChoice``):
    ``choices[0].prompt_logprobs`` is one ``{token_id: {logprob, rank, decoded_token}}`` per prompt token (the
    first ``null``) and ``choices[0].prompt_token_ids`` names the prompt's own token at each position.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import openai

from ..errors import ConfigError, NsDspyError
from ..types import Exemplar
from ..urls import parse_url_at_model, public_url
from .align import locate_tokens, token_for_span
from .base import BINS, Simulator, positive
from .prompt import PROMPT_VERSION, prompt_pieces, prompt_text

__all__ = ["EndpointError", "EndpointSimulator", "ServerTokens", "parse_choice", "slot_predictions"]

logger = logging.getLogger(__name__)

STYLES = ("echo", "vllm")
_RETRY_STATUS = frozenset({408, 409, 429})  # and every 5xx
_LABELS = {str(b): b for b in range(BINS)}
# What a server says when it cannot give logprobs at all (llama-cpp-python's server started with
# --logits_all false answers 500 "logprobs is not supported for models created with logits_all=False").
_NO_LOGPROBS = re.compile(r"logprobs?\b[^.]{0,40}\bnot supported|logits_all", re.IGNORECASE)


class EndpointError(NsDspyError):
    """The endpoint is unreachable, rejects the request, or returns no usable logprobs."""


@dataclass
class ServerTokens:
    """The server's view of a prompt: per token, its text, its offset as reported, and its top logprobs."""

    texts: list[str | None]
    offsets: list[int] | None
    tops: list[dict[str, float] | None]  # token text -> logprob of that token at this position


def parse_choice(choice: dict, style: str) -> ServerTokens:
    """Read ``choices[0]`` of a ``/completions`` response in ``style``; raise :class:`EndpointError` if it holds
    no prompt logprobs."""
    if style == "vllm":
        plp, ids = choice.get("prompt_logprobs"), choice.get("prompt_token_ids")
        if not plp:
            raise EndpointError("the endpoint returned no prompt_logprobs: style='vllm' needs a vLLM server; "
                                "use style='echo' for other servers")
        if not ids or len(ids) != len(plp):
            raise EndpointError("the endpoint returned no prompt_token_ids: style='vllm' needs a vLLM with "
                                "return_token_ids; upgrade vLLM or use style='echo'")
        texts: list[str | None] = []
        tops: list[dict[str, float] | None] = []
        for tid, entry in zip(ids, plp):
            if not entry:
                texts.append(None)
                tops.append(None)
                continue
            own = entry.get(str(tid)) or {}
            texts.append(own.get("decoded_token"))
            top: dict[str, float] = {}
            for lp in entry.values():
                text = lp.get("decoded_token")
                if text is not None:  # tokens decoding to the same text pool their probability
                    top[text] = float(np.logaddexp(top.get(text, -math.inf), float(lp["logprob"])))
            tops.append(top)
        return ServerTokens(texts, None, tops)
    lp = choice.get("logprobs") or {}
    tokens, tops_raw = lp.get("tokens"), lp.get("top_logprobs")
    if not tokens or not tops_raw or all(t is None for t in tops_raw):
        raise EndpointError("the endpoint returned no logprobs: it must support echo + logprobs on /completions "
                            "(vLLM, llama-cpp-python's server)")
    offsets = lp.get("text_offset")
    return ServerTokens(list(tokens), list(offsets) if offsets and len(offsets) == len(tokens) else None,
                        [_as_top(t) for t in tops_raw])


def _as_top(top) -> dict[str, float] | None:
    """``{text: logprob}``; also accepts a list of ``{"token", "logprob"}`` entries."""
    if not top:
        return None
    if isinstance(top, dict):
        return {str(k): float(v) for k, v in top.items() if v is not None}
    return {str(t["token"]): float(t["logprob"]) for t in top if isinstance(t, dict) and "token" in t}


def slot_predictions(prompt: str, slots: Sequence[int], server: ServerTokens) -> tuple[np.ndarray, int]:
    """Expected bin at each slot offset, and how many slots had no bin among the top logprobs (read as 0).

    The slot is read at the token that starts at the slot's offset, or at the token covering it (a tokenizer
    may merge the tab with what follows, e.g. "\\tunknown"); then only alternatives that repeat the covered
    prompt text (the tab) count, and the rest of each is the bin label.
    """
    spans = locate_tokens(prompt, server.texts, server.offsets)
    known = [(s, i) for i, s in enumerate(spans) if s is not None and s[1] > s[0]]
    starts = [s[0] for s, _ in known]
    ends = [s[1] for s, _ in known]
    preds = np.zeros(len(slots), dtype=np.float32)
    missing = 0
    for k, slot in enumerate(slots):
        j = token_for_span(starts, ends, slot, slot + 1)  # the token covering the slot's first character
        if j < 0 or not starts[j] <= slot < ends[j]:
            if not known or starts[-1] < slots[0]:
                raise EndpointError("the endpoint returned no logprobs for the echoed prompt (only for "
                                    f"{len(server.texts)} token(s)): it must support echo + logprobs on /completions "
                                    "(vLLM, llama-cpp-python's server; llama.cpp's llama-server does not)")
            raise EndpointError("cannot align the endpoint's prompt tokens with the prompt text at slot "
                                f"{k}: the server must echo the prompt unchanged; try style='vllm' on vLLM")
        (start, _), i = known[j]
        head, top = prompt[start:slot], server.tops[i]
        probs = np.zeros(BINS, dtype=np.float64)
        for text, logprob in (top or {}).items():
            if text.startswith(head):
                b = _LABELS.get(text[len(head):].strip())
                if b is not None:
                    probs[b] += math.exp(logprob)
        total = probs.sum()
        if total > 0:
            preds[k] = float(probs @ np.arange(BINS)) / total
        else:
            missing += 1
    return np.clip(preds, 0, BINS - 1), missing


@dataclass
class EndpointOptions:
    """``endpoint`` options."""

    api_key: str | None = None
    """the server's API key (default: $OPENAI_API_KEY, else "none"); never shown or stored."""
    top_logprobs: int = 15
    """logprobs read per slot (a bin missing from them counts 0)."""
    concurrency: int = 8
    """requests in flight at once."""
    timeout: float = 60.0
    """seconds per request."""
    retries: int = 4
    """retries of a transient failure (connection, timeout, 408/409/429, 5xx)."""
    style: str = "echo"
    """echo (prompt logprobs with echo) or vllm (vLLM's prompt_logprobs)."""
    backoff: float = 0.5
    """first retry's wait in seconds, doubled each retry, with jitter."""

    def __post_init__(self) -> None:
        positive("endpoint", "top_logprobs", self.top_logprobs)
        positive("endpoint", "concurrency", self.concurrency)
        positive("endpoint", "retries", self.retries, 0)
        positive("endpoint", "backoff", self.backoff, 0)
        if not self.timeout > 0:
            raise ConfigError(f"endpoint simulator option timeout must be positive, got {self.timeout!r}")
        if self.style not in STYLES:
            raise ConfigError(f"unknown endpoint style {self.style!r}: use one of {', '.join(STYLES)}")


class EndpointSimulator(Simulator):
    """Simulator served by an OpenAI-compatible ``/completions`` endpoint; see the module docstring.

    Requests run concurrently (at most ``concurrency`` at a time), each with a ``timeout`` in seconds, retried
    ``retries`` times with exponential backoff and jitter on connection errors, timeouts, 408/409/429 and 5xx.
    Identical (explanation, exemplar) pairs are sent once. The API key defaults to ``$OPENAI_API_KEY`` (or
    "none") and appears in no message, repr or cache key. Thread-safe: every call has its own client.
    """

    kind: ClassVar[str] = "endpoint"
    run_options: ClassVar[str] = "refuse"
    Options = EndpointOptions

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, top_logprobs: int = 15,
                 concurrency: int = 8, timeout: float = 60, retries: int = 4, style: str = "echo",
                 backoff: float = 0.5):
        if not re.match(r"^https?://[^/]", base_url or ""):
            raise ConfigError(f"bad endpoint URL {public_url(base_url or '')!r}: write http://HOST:PORT/v1")
        if not model:
            raise ConfigError("no endpoint model given: write endpoint:URL@MODEL, e.g. "
                              "endpoint:http://127.0.0.1:8000/v1@my-model")
        if style not in STYLES:
            raise ConfigError(f"unknown endpoint style {style!r}: use one of {', '.join(STYLES)}")
        try:
            top_logprobs, concurrency, retries = int(top_logprobs), int(concurrency), int(retries)
            timeout, backoff = float(timeout), float(backoff)
        except (TypeError, ValueError):
            raise ConfigError("endpoint options top_logprobs, concurrency and retries must be integers, "
                              "timeout and backoff numbers") from None
        if top_logprobs < 1 or concurrency < 1 or retries < 0 or timeout <= 0 or backoff < 0:
            raise ConfigError("endpoint options need top_logprobs >= 1, concurrency >= 1, retries >= 0, "
                              "timeout > 0 and backoff >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.top_logprobs, self.concurrency, self.timeout = top_logprobs, concurrency, timeout
        self.retries, self.style, self.backoff = retries, style, backoff
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY") or "none"
        self.slots = 0
        self.missing_slots = 0
        """Slots read so far, and those with no bin among the top logprobs (predicted 0)."""

    @classmethod
    def from_spec(cls, arg: str, **options) -> "EndpointSimulator":
        """``URL@MODEL``, e.g. ``http://127.0.0.1:8000/v1@my-model`` (split at the last ``@``)."""
        url, model = parse_url_at_model(arg, "simulator")
        return cls(url, model, **dataclasses.asdict(cls.parse_options(options)))

    @classmethod
    def check_spec(cls, arg: str, **options) -> None:
        parse_url_at_model(arg, "simulator")
        cls.parse_options(options)

    @property
    def cache_key(self) -> str:
        return (f"{self.kind}|{public_url(self.base_url)}|{self.model}|{self.style}|{PROMPT_VERSION}"
                f"|top{self.top_logprobs}")

    def __repr__(self) -> str:
        return (f"EndpointSimulator({public_url(self.base_url)!r}, {self.model!r}, style={self.style!r}, "
                f"top_logprobs={self.top_logprobs})")

    def simulate(self, explanations: Sequence[str], exemplars: Sequence[Exemplar]) -> list[list[np.ndarray]]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.asimulate(explanations, exemplars))
        with ThreadPoolExecutor(1) as pool:  # called from inside an event loop: run ours in a worker thread
            return pool.submit(asyncio.run, self.asimulate(explanations, exemplars)).result()

    async def asimulate(self, explanations: Sequence[str],
                        exemplars: Sequence[Exemplar]) -> list[list[np.ndarray]]:
        """:meth:`simulate` for callers that already run an event loop."""
        jobs: dict[tuple[str, tuple[str, ...]], int] = {}
        for e in explanations:
            for x in exemplars:
                if x.tokens:
                    jobs.setdefault((e, tuple(x.tokens)), len(jobs))
        sem = asyncio.Semaphore(self.concurrency)
        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, timeout=self.timeout,
                                    max_retries=0)
        async with client:
            tasks = [asyncio.create_task(self._one(client, sem, e, list(toks))) for e, toks in jobs]
            try:
                results = await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        missing = sum(m for _, m in results)
        slots = sum(len(p) for p, _ in results)
        self.slots += slots
        self.missing_slots += missing
        if slots and missing == slots:
            raise EndpointError(f"no bin 0..10 was among the top {self.top_logprobs} logprobs at any slot: raise "
                                "top_logprobs (e.g. 20) or use a model that follows the simulation prompt")
        if missing:
            logger.warning("%d of %d slots had no bin among the top %d logprobs and read as 0; consider a larger "
                           "top_logprobs", missing, slots, self.top_logprobs)
        empty = np.zeros(0, dtype=np.float32)
        return [[results[jobs[(e, tuple(x.tokens))]][0] if x.tokens else empty.copy() for x in exemplars]
                for e in explanations]

    async def _one(self, client, sem: asyncio.Semaphore, explanation: str,
                   tokens: list[str]) -> tuple[np.ndarray, int]:
        prompt, slots = prompt_text(prompt_pieces(explanation, tokens))
        data = await self._request(client, sem, prompt)
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise EndpointError(f"the endpoint at {public_url(self.base_url)} returned no completion choices: "
                                "point the URL at an OpenAI-compatible server's /v1")
        return slot_predictions(prompt, slots, parse_choice(choices[0], self.style))

    def _body(self, prompt: str) -> dict:
        body: dict = dict(model=self.model, prompt=prompt, max_tokens=1, temperature=0.0)
        if self.style == "echo":
            body.update(echo=True, logprobs=self.top_logprobs)
        else:
            body["extra_body"] = {"prompt_logprobs": self.top_logprobs, "return_token_ids": True}
        return body

    async def _request(self, client, sem: asyncio.Semaphore, prompt: str) -> dict:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt - 1, last))
            try:
                async with sem:
                    raw = await client.completions.with_raw_response.create(**self._body(prompt))
                return raw.http_response.json()
            except openai.APIStatusError as e:
                if _NO_LOGPROBS.search(self._server_says(e)):  # no retry can change that
                    raise self._no_logprobs(e) from None
                if e.status_code not in _RETRY_STATUS and e.status_code < 500:
                    raise self._status_error(e) from None
                last = e
            except openai.APIConnectionError as e:  # includes timeouts
                last = e
            except ValueError:  # the body is not JSON
                raise EndpointError(f"the endpoint at {public_url(self.base_url)} did not answer with JSON: "
                                    "point the URL at an OpenAI-compatible server's /v1") from None
        raise self._exhausted(last) from last

    def _delay(self, attempt: int, err: Exception | None) -> float:
        delay = min(30.0, self.backoff * 2 ** attempt) * (0.5 + random.random())
        retry_after = getattr(getattr(err, "response", None), "headers", {}).get("retry-after")
        try:
            return max(delay, min(60.0, float(retry_after))) if retry_after else delay
        except ValueError:
            return delay

    def _say(self, text: object) -> str:
        """Server text as one short line without the API key."""
        line = " ".join(str(text).split())
        if len(self._api_key) >= 4 and self._api_key != "none":
            line = line.replace(self._api_key, "***")
        return line[:300]

    def _server_says(self, e) -> str:
        body = e.body
        return self._say(body.get("message", body) if isinstance(body, dict) else body or e.message)

    def _no_logprobs(self, e) -> EndpointError:
        return EndpointError(f"the endpoint at {public_url(self.base_url)} returns no prompt logprobs "
                             f"({e.status_code}: {self._server_says(e)}): restart llama-cpp-python's server with "
                             "--logits_all true (its default) or serve the model with vLLM")

    def _status_error(self, e) -> EndpointError:
        url, code, said = public_url(self.base_url), e.status_code, self._server_says(e)
        if code in (401, 403):
            return EndpointError(f"the endpoint at {url} rejected the API key ({code}: {said}): pass api_key= "
                                 "or set OPENAI_API_KEY")
        if code == 404:
            return EndpointError(f"model {self.model!r} or /completions not found at {url} ({said}): use a model "
                                 f"listed at {url}/models and a URL ending in /v1")
        return EndpointError(f"the endpoint at {url} rejected the request ({code}: {said}): check top_logprobs "
                             "against the server's limit (vLLM --max-logprobs) and the model's context length")

    def _exhausted(self, last: Exception | None) -> EndpointError:
        url, n = public_url(self.base_url), self.retries + 1
        tries = f"{n} tries" if n > 1 else "1 try"
        if isinstance(last, openai.APITimeoutError):
            return EndpointError(f"the endpoint at {url} timed out after {self.timeout:g}s on {tries}: "
                                 "raise timeout= or lower concurrency=")
        if isinstance(last, openai.APIConnectionError):
            return EndpointError(f"no server at {url} (connection failed on {tries}): start it or fix --simulator")
        if isinstance(last, openai.APIStatusError):
            return EndpointError(f"the endpoint at {url} failed {tries}; last error {last.status_code}: "
                                 f"{self._server_says(last)}")
        return EndpointError(f"the endpoint at {url} failed {tries}; last error: {self._say(last)}")
