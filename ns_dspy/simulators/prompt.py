"""The all-at-once simulation prompt (the format of Bills et al. 2023), shared by every prompted backend.

The prompt explains the task, shows one worked example, then gives the explanation and the text as
``token<TAB>unknown`` lines. A causal LM's next-token distribution right after each ``<TAB>`` is read over
the bin tokens "0".."10"; the expected bin is the predicted activation. Pieces are tokenized separately and
concatenated, so every slot position is known exactly, whatever the tokenizer does with tabs.

Bump :data:`PROMPT_VERSION` whenever the text changes: it is part of every prompted simulator's cache key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["PROMPT_VERSION", "HEADER", "PromptPieces", "render_token", "prompt_pieces", "prompt_text", "encode_pieces"]

PROMPT_VERSION = "aao-1"

HEADER = (
    "We are studying a neuron inside a language model. The neuron responds to particular things in a "
    "short text. Read an explanation of what the neuron responds to, then predict the neuron's activation "
    "on every token of a text.\n\n"
    "Each line is a token, a tab, and the activation, an integer from 0 (no response) to 10 (strongest "
    "response). Most tokens have activation 0. \"unknown\" marks an activation to predict.\n\n"
    "Explanation: words for colours\n"
    "Activations:\n<start>\nThe\t0\n sky\t0\n was\t0\n deep\t1\n blue\t10\n and\t0\n the\t0\n grass\t0\n"
    " green\t9\n.\t0\n<end>\n\n"
)


def render_token(token: str) -> str:
    """A token as it appears on its line: newlines and tabs made visible so lines stay lines."""
    return token.replace("\n", "\\n").replace("\t", "\\t")


@dataclass(frozen=True)
class PromptPieces:
    """Prompt text cut so that slot ``i`` is read right after ``prefix + lines[0] + ... + lines[i]``."""

    prefix: str          # header, explanation and "<start>\n": shared by every text for one explanation
    lines: list[str]     # "token<TAB>" for each token: the model's next token after it is the prediction
    fill: str = "unknown\n"  # what follows each slot
    suffix: str = "<end>\n"


def prompt_pieces(explanation: str, tokens: Sequence[str]) -> PromptPieces:
    prefix = f"{HEADER}Explanation: {explanation.strip()}\nActivations:\n<start>\n"
    return PromptPieces(prefix=prefix, lines=[f"{render_token(t)}\t" for t in tokens])


def prompt_text(pieces: PromptPieces) -> tuple[str, list[int]]:
    """The whole prompt as one string and the character offset right after each slot's tab."""
    parts, offsets, pos = [pieces.prefix], [], len(pieces.prefix)
    for line in pieces.lines:
        parts.append(line)
        pos += len(line)
        offsets.append(pos)
        parts.append(pieces.fill)
        pos += len(pieces.fill)
    parts.append(pieces.suffix)
    return "".join(parts), offsets


def encode_pieces(pieces: PromptPieces, encode: Callable[[str], list[int]]) -> tuple[list[int], list[int], list[int]]:
    """Token ids of the shared prefix, ids of the per-text part, and the index (within the per-text part) of
    the last token of each slot line - the position whose next-token distribution is read."""
    prefix = encode(pieces.prefix)
    body: list[int] = []
    slots: list[int] = []
    fill = encode(pieces.fill)
    for line in pieces.lines:
        body.extend(encode(line))
        slots.append(len(body) - 1)
        body.extend(fill)
    return prefix, body, slots
