"""Observed output lengths: read from a text or JSON file, checked, turned into a distribution."""

from __future__ import annotations

import json
import os
from collections import Counter

from neffkit.errors import NeffkitError

__all__ = ["LengthsError", "distribution", "parse_lengths", "read_lengths"]


class LengthsError(NeffkitError):
    """A lengths file that cannot be read or holds something other than positive integers."""


def read_lengths(path: str | os.PathLike) -> list[int]:
    """The output lengths in ``path``: one integer per line (``#`` comments), or a JSON list.

    Each length is the number of decoder steps one observed request ran, its EOS included.

    Raises:
        LengthsError: the file cannot be read, or an entry is not a positive integer (the
            message names the file and the line).
    """
    where = os.fspath(path)
    try:
        with open(where, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise LengthsError(f"{where}: cannot read the lengths file: {e}") from e
    return parse_lengths(text, where)


def parse_lengths(text: str, where: str = "<lengths>") -> list[int]:
    """Lengths from the text of a lengths file (see :func:`read_lengths`); ``where`` names it."""
    if text.lstrip().startswith("["):
        return _parse_json(text, where)
    lengths = []
    for number, line in enumerate(text.splitlines(), start=1):
        item = line.split("#", 1)[0].strip()
        if item:
            lengths.append(_positive(item, f"{where}:{number}"))
    if not lengths:
        raise LengthsError(f"{where}: no lengths (expected one integer per line, or a JSON list)")
    return lengths


def _parse_json(text: str, where: str) -> list[int]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise LengthsError(f"{where}:{e.lineno}: not valid JSON: {e.msg}") from e
    if not isinstance(items, list) or not items:
        raise LengthsError(f"{where}: expected a non-empty JSON list of integers")
    lines = _entry_lines(text)
    return [_positive(x, f"{where}:{line}") for x, line in zip(items, lines, strict=True)]


def _entry_lines(text: str) -> list[int]:
    """The line of each entry of the (valid) JSON list ``text``."""
    decoder = json.JSONDecoder()
    lines: list[int] = []
    at = text.index("[") + 1
    while True:
        while text[at] in " \t\r\n,":
            at += 1
        if text[at] == "]":
            return lines
        lines.append(text.count("\n", 0, at) + 1)
        _, at = decoder.raw_decode(text, at)


def _positive(item: object, where: str) -> int:
    if isinstance(item, bool) or not isinstance(item, int | str):
        raise LengthsError(f"{where}: expected a positive integer, got {item!r}")
    try:
        value = int(item)
    except ValueError:
        raise LengthsError(f"{where}: expected a positive integer, got {item!r}") from None
    if value < 1:
        raise LengthsError(
            f"{where}: a length must be at least 1 (every request runs one step), got {value}"
        )
    return value


def distribution(lengths: list[int], max_len: int) -> list[float]:
    """``p[L]`` for L in 0..max_len: the share of requests that run exactly L steps (p[0] = 0).

    Raises:
        LengthsError: a length exceeds ``max_len`` (the loop cannot run that long).
    """
    too_long = [x for x in lengths if x > max_len]
    if too_long:
        raise LengthsError(
            f"{len(too_long)} of {len(lengths)} lengths exceed the maximum length {max_len} "
            f"(the longest is {max(too_long)}); pass a larger --max-len"
        )
    counts = Counter(lengths)
    return [counts.get(n, 0) / len(lengths) for n in range(max_len + 1)]
