"""Token alignment by characters: where one tokenization of a text meets another.

An exemplar may come from any tokenizer and a server tokenizes a prompt its own way, so a simulator relates
two tokenizations of one text through character offsets. Two operations, both built on :func:`token_for_span`
(which of a model's tokens, given as character spans, stands for a span of the text):

* :func:`align_to_tokenizer` - an exemplar's token strings onto a tokenizer: that tokenizer's ids for the
  text and, for each exemplar token, the position to read (``finetuned:``);
* :func:`locate_tokens` - a server's token strings (and the offsets it reports) onto the prompt it was sent:
  the character span of each server token (``endpoint:``, which then reads each slot with
  :func:`token_for_span`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

__all__ = ["token_for_span", "align_to_tokenizer", "locate_tokens"]

_SLACK = 64  # how far ahead (characters) a token is searched for after an unalignable one


def token_for_span(starts: Sequence[int], ends: Sequence[int], start: int, end: int) -> int:
    """The index of the model token that stands for the characters ``[start, end)``, or ``-1``.

    ``starts``/``ends`` are the model tokens' character spans, in text order. A non-empty span
    is read at the last model token ending inside ``(start, end]``; if none does, at the model token straddling
    ``end`` (it has seen all of the span and a little of what follows). An empty span (or one no model token
    reaches) is read at the last model token ending at or before ``end``; ``-1`` is "before the first token".
    """
    last = bisect.bisect_right(ends, end) - 1  # last model token ending at or before end
    if start < end and last >= 0 and ends[last] > start:
        return last
    if start < end and last + 1 < len(starts) and starts[last + 1] < end:
        return last + 1
    return last


def align_to_tokenizer(tokenizer, tokens: Sequence[str],
                       token_ids: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """``(ids, read)``: this tokenizer's ids for a text given as ``tokens``, and where to read each token.

    ``read[j]`` is the index in ``ids`` whose prediction stands for ``tokens[j]``, or ``-1`` for "the position
    just before the text" (an empty token at the start). ``token_ids`` are used as they are when every id is
    in this vocabulary and decodes, one by one, to its token string (the exemplar was recorded with this
    tokenizer). Otherwise the joined text is encoded and token ``j`` (characters ``[s, e)``) is read where
    :func:`token_for_span` says: at the last simulator token ending inside ``(s, e]``; if none does, at the
    simulator token straddling ``e``; an empty token at the last simulator token ending at or before ``s``.
    """
    tokens = list(tokens)
    if token_ids is not None and len(token_ids) == len(tokens):
        n = len(tokenizer)
        if all(0 <= int(i) < n for i in token_ids) and all(
                tokenizer.decode([int(i)]) == t for i, t in zip(token_ids, tokens)):
            return [int(i) for i in token_ids], list(range(len(tokens)))
    if not getattr(tokenizer, "is_fast", False):
        return _align_by_pieces(tokenizer, tokens)
    enc = tokenizer("".join(tokens), add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    starts = [s for s, _ in offsets]
    ends = [e for _, e in offsets]
    read, pos = [], 0
    for tok in tokens:
        read.append(token_for_span(starts, ends, pos, pos + len(tok)))
        pos += len(tok)
    return ids, read


def _align_by_pieces(tokenizer, tokens: list[str]) -> tuple[list[int], list[int]]:
    """Slow tokenizers have no offsets: encode each token on its own and read at its last piece."""
    ids: list[int] = []
    read = []
    for tok in tokens:
        ids.extend(tokenizer(tok, add_special_tokens=False)["input_ids"] if tok else [])
        read.append(len(ids) - 1)
    return ids, read


def _clean(text: str | None) -> bool:
    return bool(text) and "\ufffd" not in text


def _offsets_fit(prompt: str, texts: Sequence[str | None], starts: Sequence[int | None]) -> bool:
    checked = 0
    for text, start in zip(texts, starts):
        if start is None or not _clean(text):
            continue
        if prompt[start:start + len(text)] != text:
            return False
        checked += 1
    return checked > 0


def _spans_from_starts(prompt: str, texts: Sequence[str | None], starts: Sequence[int | None]):
    """Spans from reported starts: a token with unknown text ends where the next known start begins."""
    spans: list[tuple[int, int] | None] = [None] * len(starts)
    nxt = len(prompt)
    for i in range(len(starts) - 1, -1, -1):
        start = starts[i]
        if start is None or start > len(prompt):
            continue
        end = start + len(texts[i]) if _clean(texts[i]) else nxt
        spans[i] = (start, min(end, len(prompt)))
        nxt = start
    return spans


def locate_tokens(prompt: str, texts: Sequence[str | None],
                  offsets: Sequence[int] | None = None) -> list[tuple[int, int] | None]:
    """Character span ``(start, end)`` of each server token in ``prompt``, None where it is not in the prompt.

    Reported offsets are used when every clean token's text is found at its offset, read as characters or as
    UTF-8 bytes. Otherwise (offsets shifted by a BOS token, or counted over pieces of split UTF-8 characters)
    the token texts are matched in order; special tokens and partial characters ("\\ufffd") are skipped.
    """
    if offsets is not None:
        if _offsets_fit(prompt, texts, offsets):
            return _spans_from_starts(prompt, texts, offsets)
        byte_to_char, pos = {}, 0
        for c, ch in enumerate(prompt):
            byte_to_char[pos] = c
            pos += len(ch.encode("utf-8"))
        byte_to_char[pos] = len(prompt)
        starts = [byte_to_char.get(o) for o in offsets]
        if pos != len(prompt) and _offsets_fit(prompt, texts, starts):
            return _spans_from_starts(prompt, texts, starts)
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for text in texts:
        if not text:
            spans.append(None)
            continue
        at = cursor if prompt.startswith(text, cursor) else -1
        if at < 0 and "\ufffd" not in text:
            at = prompt.find(text, cursor, cursor + _SLACK + len(text))
        if at < 0:
            spans.append(None)
            continue
        spans.append((at, at + len(text)))
        cursor = at + len(text)
    return spans
