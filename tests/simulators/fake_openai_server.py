"""A small OpenAI-compatible completions server for tests: 127.0.0.1 only, a free port, stdlib only.

``POST /v1/completions`` echoes the prompt with logprobs, either in the OpenAI legacy shape (``echo=True,
logprobs=K``: ``tokens``, ``text_offset``, ``token_logprobs``, ``top_logprobs``) or in vLLM's own shape
(``prompt_logprobs=K``, ``return_token_ids``: ``prompt_logprobs`` as ``{token_id: {logprob, rank,
decoded_token}}`` per token and ``prompt_token_ids``). The prompt is split into words (with their leading
space), punctuation marks and single whitespace characters.

The "model" follows the explanation: at a slot (right after a line's tab) it puts most mass on "9" when the
line's token, stripped and lower-cased, is a word of the prompt's last ``Explanation:`` line, else on "0".

Attributes set at construction (and changeable between requests) make it misbehave like real servers:
failing the first requests, sleeping, returning no logprobs, logprobs of generated tokens only (llama.cpp's
llama-server), offsets in bytes or shifted by a BOS token (vLLM), split UTF-8 characters, a tab merged
into the following token, an API key, unknown models.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FakeOpenAIServer", "tokenize"]

_TOKEN_RE = re.compile(r" ?\w+| ?[^\w\s]|\s")
_SLOT_BIN = {True: {"9": 0.55, "8": 0.15}, False: {"0": 0.55, "1": 0.15}}
_FILLER = {"the": 0.4, " a": 0.3, ",": 0.2, "\n": 0.1}
MAX_LOGPROBS = 20


def tokenize(text: str, *, merge_tab: bool = False, split_utf8: bool = False) -> list[tuple[str, int, int]]:
    """``(token text, start, end)`` character spans; split non-ASCII characters give one "\\ufffd" per byte."""
    pattern = re.compile(r"\t\w+|" + _TOKEN_RE.pattern) if merge_tab else _TOKEN_RE
    out = []
    for m in pattern.finditer(text):
        if not split_utf8 or m.group().isascii():
            out.append((m.group(), m.start(), m.end()))
            continue
        run = m.start()
        for c in range(m.start(), m.end()):  # ASCII runs stay whole, each byte of other characters is a token
            if not text[c].isascii():
                if run < c:
                    out.append((text[run:c], run, c))
                out.extend(("\ufffd", c, c + 1) for _ in text[c].encode("utf-8"))
                run = c + 1
        if run < m.end():
            out.append((text[run:m.end()], run, m.end()))
    return out


def _distribution(prompt: str, start: int, token: str, *, no_bins: bool) -> dict[str, float]:
    """What the fake model expects at a token starting at ``start`` (before it sees the token)."""
    prefix = prompt[:start]
    head = ""
    if token.startswith("\t") and len(token) > 1:  # a merged "\tunknown": the slot is inside this token
        head, prefix = "\t", prefix + "\t"
    if not prefix.endswith("\t"):
        return dict(_FILLER)
    line = prefix[prefix.rfind("\n") + 1:-1]
    word = line.strip().lower()
    found = re.findall(r"Explanation: (.*)\n", prefix)
    words = set(re.findall(r"\w+", found[-1].lower())) if found else set()
    dist = {"unknown": 0.2, "\n": 0.1}
    dist.update({"?": 0.4, "x": 0.3} if no_bins else _SLOT_BIN[bool(word) and word in words])
    return {head + k: v for k, v in dist.items()}


class FakeOpenAIServer:
    """Use as a context manager; ``url`` is the base URL (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, *, model: str = "fake", api_key: str | None = None, fail_first: int = 0,
                 fail_status: int = 500, delay: float = 0.0, no_logprobs: bool = False,
                 generated_only: bool = False, no_bins: bool = False, offsets: str = "chars",
                 bos: str | None = None, split_utf8: bool = False, merge_tab: bool = False,
                 token_ids: bool = True):
        self.model, self.api_key = model, api_key
        self.fail_first, self.fail_status, self.delay = fail_first, fail_status, delay
        self.no_logprobs, self.generated_only, self.no_bins = no_logprobs, generated_only, no_bins
        self.offsets = offsets  # "chars", "bytes", or "cumulative" (vLLM: running sum of token text lengths)
        self.bos, self.split_utf8, self.merge_tab, self.token_ids = bos, split_utf8, merge_tab, token_ids
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        self._vocab: dict[str, int] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "FakeOpenAIServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "Not Found", "type": "not_found", "code": 404}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests += 1
                    n = server.requests
                    server.bodies.append(body)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, payload = server._handle(self.path, self.headers.get("Authorization"), body, n)
                finally:
                    with server._lock:
                        server.in_flight -= 1
                self._send(status, payload)

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # behaviour
    def _handle(self, path: str, auth: str | None, body: dict, n: int) -> tuple[int, dict]:
        if path.rstrip("/") != "/v1/completions":
            return 404, {"error": {"message": "Not Found", "type": "not_found", "code": 404}}
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            given = (auth or "").removeprefix("Bearer ")
            return 401, {"error": {"message": f"Incorrect API key provided: {given}", "type": "invalid_request_error",
                                   "code": "invalid_api_key"}}
        if body.get("model") != self.model:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                   "type": "NotFoundError", "code": 404}}
        if self.delay:
            time.sleep(self.delay)
        if n <= self.fail_first:
            return self.fail_status, {"error": {"message": "the fake server is failing on purpose",
                                                "type": "server_error", "code": self.fail_status}}
        k = body.get("prompt_logprobs") or body.get("logprobs") or 0
        if k > MAX_LOGPROBS:
            message = f"Requested logprobs of {k}, which is greater than max allowed: {MAX_LOGPROBS}"
            return 400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400}  # vLLM's shape
        prompt = body.get("prompt", "")
        choice = {"index": 0, "text": "0", "logprobs": None, "finish_reason": "length"}
        if body.get("prompt_logprobs") is not None:
            choice.update(self._vllm(prompt, k, bool(body.get("return_token_ids"))))
        elif body.get("logprobs") is not None and not self.no_logprobs:
            choice["text"] = prompt + "0" if body.get("echo") else "0"
            choice["logprobs"] = self._echo(prompt, k)
        return 200, {"id": f"cmpl-{n}", "object": "text_completion", "created": 0, "model": self.model,
                     "choices": [choice], "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1}}

    def _positions(self, prompt: str):
        """(text, start, distribution or None) per prompt token, a BOS first if configured."""
        out = [(self.bos, 0, None)] if self.bos else []
        for text, start, _ in tokenize(prompt, merge_tab=self.merge_tab, split_utf8=self.split_utf8):
            dist = None if not out else _distribution(prompt, start, text, no_bins=self.no_bins)
            out.append((text, start, dist))
        return out

    def _echo(self, prompt: str, k: int) -> dict:
        positions = self._positions(prompt) + [("0", len(prompt), dict(_SLOT_BIN[False]))]  # the generated token
        if self.generated_only:  # llama.cpp's llama-server: logprobs of the generated token only
            positions = positions[-1:]
        tokens, offsets, token_lps, tops, running = [], [], [], [], 0
        for text, start, dist in positions:
            tokens.append(text)
            if self.offsets == "bytes":
                offsets.append(len(prompt[:start].encode("utf-8")))
            elif self.offsets == "cumulative":
                offsets.append(running)
            else:
                offsets.append(start)
            running += len(text)
            if dist is None:
                token_lps.append(None)
                tops.append(None)
                continue
            token_lps.append(math.log(dist.get(text, 1e-4)))
            best = sorted(dist.items(), key=lambda kv: -kv[1])[:k]
            tops.append({t: math.log(p) for t, p in best})
        return {"tokens": tokens, "text_offset": offsets, "token_logprobs": token_lps, "top_logprobs": tops}

    def _id(self, text: str) -> int:
        with self._lock:
            return self._vocab.setdefault(text, len(self._vocab) + 2)  # 1 is the BOS

    def _vllm(self, prompt: str, k: int, return_ids: bool) -> dict:
        ids, plps = [], []
        for text, _, dist in self._positions(prompt):
            tid = 1 if (self.bos and not ids) else self._id(text)
            ids.append(tid)
            if dist is None:
                plps.append(None)
                continue
            ranked = sorted(dist.items(), key=lambda kv: -kv[1])
            entry = {str(self._id(t)): {"logprob": math.log(p), "rank": r + 1, "decoded_token": t}
                     for r, (t, p) in enumerate(ranked[:k])}
            rank = next((r + 1 for r, (t, _) in enumerate(ranked) if t == text), len(ranked) + 1)
            entry.setdefault(str(tid), {"logprob": math.log(dist.get(text, 1e-4)), "rank": rank,
                                        "decoded_token": text})
            plps.append(entry)
        out = {"prompt_logprobs": plps}
        if return_ids and self.token_ids:
            out["prompt_token_ids"] = ids
        return out
