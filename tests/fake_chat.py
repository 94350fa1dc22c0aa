"""A local OpenAI-compatible chat server for tests (127.0.0.1 only, a random free port).

``POST /v1/chat/completions`` answers with ``answer(body)``: a string becomes the assistant message (with
``usage`` tokens), a ``(status, payload)`` or ``(status, payload, headers)`` tuple is sent as it is,
:data:`DROP` closes the connection without a byte of answer, and :class:`Hang` holds the request open without
answering (until the client gives up or the hang ends; then the connection is closed). ``GET /v1/models`` lists
``model``. Every request body and Authorization header is recorded, and for every hang how long the client
waited before closing its end (``hangs``).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DROP = object()
"""An answer: close the connection without answering (what a crashing proxy or server does)."""


@dataclass(frozen=True)
class Hang:
    """An answer: send nothing for ``seconds`` (or until the client closes the connection), then close it."""

    seconds: float


@dataclass
class HangRecord:
    waited_s: float  # seconds from the request to the client closing its end (or to the end of the hang)
    client_gave_up: bool  # the client closed the connection before the hang ended


class FakeChatServer:
    def __init__(self, answer: Callable[[dict], object], *, model: str = "fake", usage: tuple[int, int] = (11, 5)):
        self.answer, self.model, self.usage = answer, model, usage
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        self.hangs: list[HangRecord] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                server.bodies.append(body)
                server.auth.append(self.headers.get("Authorization"))
                result = server.answer(body)
                if result is DROP:
                    self._drop()
                    return
                if isinstance(result, Hang):
                    self._hang(result.seconds)
                    return
                if isinstance(result, tuple):
                    self._send(*result)
                    return
                prompt, completion = server.usage
                self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": server.model,
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": result}}],
                                 "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                           "total_tokens": prompt + completion}})

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, str(value))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client is gone (killed, or gave up)
                    self.close_connection = True

            def _drop(self):
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def _hang(self, seconds: float):
                start = time.monotonic()
                gave_up = False
                while (left := seconds - (time.monotonic() - start)) > 0:
                    readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
                    if readable:
                        try:
                            gave_up = self.connection.recv(1, socket.MSG_PEEK) == b""
                        except OSError:
                            gave_up = True
                        if gave_up:
                            break
                        time.sleep(0.02)  # bytes of a next request: keep waiting for the close
                server.hangs.append(HangRecord(round(time.monotonic() - start, 3), gave_up))
                self._drop()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def calls(self) -> int:
        return len(self.bodies)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
