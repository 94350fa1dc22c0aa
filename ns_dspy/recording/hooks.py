"""Capturing hookpoint tensors during a forward pass; hooks are always removed, even on error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["capture", "StopForward"]


class StopForward(Exception):
    """Raised by a hook after the last needed layer, so layers above it are never computed."""


@contextmanager
def capture(model: nn.Module, paths: dict[str, Callable[[torch.Tensor], None]], io: str,
            stop_after: str | None = None) -> Iterator[None]:
    """Call ``paths[path](tensor)`` with each module's input (``io="input"``) or output during forward.

    With ``stop_after`` (a module path), the forward pass is cut off right after that module runs; the
    caller catches :class:`StopForward`.
    """
    handles = []
    try:
        for path, fn in paths.items():
            module = model.get_submodule(path)
            if io == "input":
                handles.append(module.register_forward_pre_hook(lambda _m, args, fn=fn: fn(args[0])))
            else:
                handles.append(module.register_forward_hook(
                    lambda _m, _a, out, fn=fn: fn(out[0] if isinstance(out, tuple) else out)))
        if stop_after is not None:
            def stop(*_):
                raise StopForward
            handles.append(model.get_submodule(stop_after).register_forward_hook(stop))
        yield
    finally:
        for h in handles:
            h.remove()
