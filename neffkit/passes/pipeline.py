"""Pipeline text: ``dedup,cse,(fold,simplify,dce){max-iter=8},unroll{max-trip=75}``.

Grammar::

    pipeline := item ("," item)*
    item     := NAME options? | "(" pipeline ")" options?
    options  := "{" KEY "=" VALUE ("," KEY "=" VALUE)* "}"

A parenthesized group repeats until no pass in it changes anything, at most ``max-iter``
times (default 10). Option keys are kebab-case versions of the pass's dataclass fields;
values are ints, floats, ``true``/``false`` or bare strings.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

from neffkit.errors import NeffkitError
from neffkit.passes.base import Pass
from neffkit.passes.registry import get_pass

DEFAULT_MAX_ITER = 10
#: Deepest nesting of parenthesized groups (the parser and the pass manager recurse on it).
MAX_DEPTH = 32


@dataclass
class Group:
    """A sequence of passes (and groups); ``repeat`` groups run to a fixed point."""

    items: list[Pass | Group] = field(default_factory=list)
    repeat: bool = False
    max_iter: int = 1

    def spec(self) -> str:
        """The pipeline text for this group."""
        inner = ",".join(i.spec() for i in self.items)
        if not self.repeat:
            return inner
        opt = "" if self.max_iter == DEFAULT_MAX_ITER else "{max-iter=" + str(self.max_iter) + "}"
        return f"({inner}){opt}"


class PipelineSyntaxError(NeffkitError):
    """The pipeline text does not parse; the message shows where."""


_TOKEN = re.compile(r"\s*(?:([A-Za-z_][\w\-.]*)|(\S))")


def parse_pipeline(text: str) -> Group:
    """Parses pipeline text into a top-level ``Group`` of pass instances."""
    p = _Parser(text)
    group = p.pipeline()
    if p.peek() is not None:
        p.fail(f"unexpected '{p.peek()}'")
    if not group.items:
        p.fail("empty pipeline")
    return group


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    def fail(self, msg: str) -> NoReturn:
        # Show at most 40 characters either side of the error, so a long text stays readable.
        lo = max(0, self.pos - 40)
        hi = min(len(self.text), self.pos + 40)
        head = "..." if lo else ""
        tail = "..." if hi < len(self.text) else ""
        shown = f"{head}{self.text[lo:hi]}{tail}"
        caret = " " * (len(head) + self.pos - lo)
        raise PipelineSyntaxError(f"bad pipeline: {msg}\n  {shown}\n  {caret}^")

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str | None:
        self._skip()
        return self.text[self.pos] if self.pos < len(self.text) else None

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            self.fail(f"expected '{ch}'")
        self.pos += 1

    def name(self) -> str:
        self._skip()
        m = re.compile(r"[A-Za-z_][\w\-.]*").match(self.text, self.pos)
        if not m:
            self.fail("expected a pass name")
        self.pos = m.end()
        return m.group(0)

    def pipeline(self) -> Group:
        group = Group()
        while True:
            c = self.peek()
            if c is None or c == ")":
                break
            group.items.append(self.item())
            if self.peek() == ",":
                self.pos += 1
                continue
            break
        return group

    def item(self) -> Pass | Group:
        if self.peek() == "(":
            if self.depth >= MAX_DEPTH:
                self.fail(f"groups nested more than {MAX_DEPTH} deep")
            self.pos += 1
            self.depth += 1
            inner = self.pipeline()
            self.depth -= 1
            self.expect(")")
            opts = self.options() if self.peek() == "{" else {}
            max_iter = opts.pop("max-iter", DEFAULT_MAX_ITER)
            if opts:
                self.fail(f"unknown group option(s) {sorted(opts)}; groups take max-iter")
            if not isinstance(max_iter, int) or max_iter < 1:
                self.fail("max-iter must be a positive integer")
            if not inner.items:
                self.fail("empty group")
            return Group(inner.items, repeat=True, max_iter=max_iter)
        start = self.pos
        name = self.name()
        opts = self.options() if self.peek() == "{" else {}
        try:
            cls = get_pass(name)
        except NeffkitError as e:
            self.pos = start
            self.fail(str(e))
        return make_pass(cls, opts)

    def options(self) -> dict[str, Any]:
        self.expect("{")
        out: dict[str, Any] = {}
        if self.peek() == "}":
            self.pos += 1
            return out
        while True:
            key = self.name()
            self.expect("=")
            self._skip()
            m = re.compile(r"[^,}]+").match(self.text, self.pos)
            if not m:
                self.fail(f"option '{key}' has no value")
            self.pos = m.end()
            out[key] = _value(m.group(0).strip())
            c = self.peek()
            if c == ",":
                self.pos += 1
                continue
            self.expect("}")
            return out


def _value(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(raw)
        except ValueError:
            pass
    return raw


def make_pass(cls: type[Pass], opts: dict[str, Any]) -> Pass:
    """Instantiates ``cls`` from kebab-case options, with clear errors for bad ones."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in opts.items():
        fname = key.replace("-", "_")
        f = fields.get(fname)
        if f is None:
            known = ", ".join(n.replace("_", "-") for n in fields) or "none"
            raise PipelineSyntaxError(
                f"pass '{cls.name}' has no option '{key}' (its options: {known})"
            )
        default = f.default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise PipelineSyntaxError(f"option '{key}' of '{cls.name}' takes true or false")
        if isinstance(default, int) and not isinstance(default, bool):
            if not isinstance(value, int) or isinstance(value, bool):
                raise PipelineSyntaxError(f"option '{key}' of '{cls.name}' takes an integer")
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # true/false is not a number: check_option refuses it below
        if isinstance(default, str) and not isinstance(value, str):
            value = str(value).lower() if isinstance(value, bool) else str(value)
        kwargs[fname] = value
    try:
        return cls(**kwargs)
    except PipelineSyntaxError:
        raise
    except NeffkitError as e:
        raise PipelineSyntaxError(str(e)) from e
