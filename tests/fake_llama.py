"""A stand-in ``llama_cpp`` package for the guard's tests: ``sigill`` kills its process on load (a miscompiled
native build), ``amx`` does so only with llama.cpp's extra weight buffers on (the AMX path of a native build),
``ok`` works. Each load appends a line to ``$FAKE_LLAMA_LOADS`` when that is set."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

FAKE = '''
__version__ = "0.0-fake"
import json, os, signal
from . import llama_cpp as lib

MODE = {mode!r}
LOADS = os.environ.get("FAKE_LLAMA_LOADS")


class Llama:
    def __init__(self, model_path, **kw):
        if LOADS:
            with open(LOADS, "a") as f:
                f.write(json.dumps({{"pid": os.getpid(), "extra": lib.llama_model_default_params().use_extra_bufts}})
                        + "\\n")
        if MODE == "sigill" or (MODE == "amx" and lib.llama_model_default_params().use_extra_bufts):
            os.kill(os.getpid(), signal.SIGILL)

    def tokenize(self, data):
        return list(range(len(data.split())))

    def eval(self, tokens):
        pass

    def sample(self, temp=0.0):
        return 7

    def set_cache(self, cache):  # llama_cpp.Llama's prefix-cache hook (the engine's PrefixCache)
        self.cache = cache

    def create_chat_completion(self, messages, **options):
        return {{"id": "x", "choices": [{{"index": 0, "finish_reason": "stop",
                                          "message": {{"role": "assistant", "content": "fine"}}}}],
                "usage": {{"prompt_tokens": 3, "completion_tokens": 1}}}}

    def close(self):
        pass


def llama_print_system_info():
    return b"CPU : AVX2 = 1 | FAKE = 1 |"
'''

PARAMS = '''
class _Params:
    use_extra_bufts = True


def llama_model_default_params():
    return _Params()
'''



def make_library(root: Path, mode: str) -> Path:
    """A folder holding the stand-in package (put it first on the path)."""
    pkg = root / mode / "llama_cpp"
    (pkg / "lib").mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(FAKE.format(mode=mode)))
    (pkg / "llama_cpp.py").write_text(PARAMS)
    (pkg / "lib" / "libllama.so").write_bytes(mode.encode() * 100)  # what the fingerprint hashes
    return root / mode


def llama_modules() -> dict:
    return {name: m for name, m in sys.modules.items() if name == "llama_cpp" or name.startswith("llama_cpp.")}
