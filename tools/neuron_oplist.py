"""Rebuilds neffkit's Neuron operator lists from the Neuron documentation's RST sources.

    python tools/neuron_oplist.py inf1 neuron-cc-ops-pytorch.rst --commit SHA -o inf1.json
    python tools/neuron_oplist.py inf2_trn1 pytorch-neuron-supported-operators.rst --commit SHA

The sources live in github.com/aws-neuron/aws-neuron-sdk (read a checkout with ``git show``):

- inf1 (torch-neuron): ``release-notes/archive/neuron-cc/neuron-cc-ops/neuron-cc-ops-pytorch.rst``
  is a changelog, newest release first. Each release adds operators, adds them with **limited**
  support (a condition), or removes them (with a reason). Replaying the releases oldest to newest
  gives each operator's state in the last release: ``supported``, ``limited`` (the condition in
  ``note``) or ``removed`` (the reason in ``note``); ``since`` is the release that set the state.
  An entry added with a condition ("Supported when ...") is ``limited`` as well.
- inf2 and trn1 (torch-neuronx): ``frameworks/torch/torch-neuronx/pytorch-neuron-supported-
  operators.rst`` is one RST grid table of operator names, every one ``supported``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

REPO = "aws-neuron/aws-neuron-sdk"
SOURCES = {
    "inf1": "release-notes/archive/neuron-cc/neuron-cc-ops/neuron-cc-ops-pytorch.rst",
    "inf2_trn1": "frameworks/torch/torch-neuronx/pytorch-neuron-supported-operators.rst",
}
PACKAGES = {"inf1": "torch-neuron", "inf2_trn1": "torch-neuronx"}
TARGETS = {"inf1": ["inf1"], "inf2_trn1": ["inf2", "trn1"]}
DOCS = "https://awsdocs-neuron.readthedocs-hosted.com/en/latest"
RENDERED = {
    "inf1": f"{DOCS}/release-notes/archive/neuron-cc/neuron-cc-ops/neuron-cc-ops-pytorch.html",
    "inf2_trn1": f"{DOCS}/frameworks/torch/torch-neuronx/pytorch-neuron-supported-operators.html",
}

_HEADING = re.compile(r"^PyTorch Neuron [Rr]elease \[(?P<label>[^\]]+)\]\s*$")
_UNDERLINE = re.compile(r"^[\^~=\-]{4,}\s*$")
_DATE = re.compile(r"^Date:\s*(?P<date>\S+)")
_BULLET = re.compile(r"^(?P<indent>\s*)[-*]\s+(?P<text>.*)$")
_OP = re.compile(r"^``(?P<op>(?:aten|prim)::\w+)``\s*(?:[:\-]\s*)?(?P<note>.*)$")
_CELL = re.compile(r"^\|\s*(?P<op>(?:aten|prim)::[\w\\]+)\s*\|\s*$")
_CONDITION = re.compile(r"^supported (when|only)", re.IGNORECASE)


class OpListError(ValueError):
    """The RST does not have the form this tool reads."""


@dataclass
class Release:
    """One release of the changelog: its version, SDK, date and (state, op, note) entries."""

    version: str
    sdk: str = ""
    date: str = ""
    entries: list[tuple[str, str, str]] = field(default_factory=list)


def _section_state(text: str) -> str | None:
    """The state a section (or a bullet opening a sub-list) gives the operators under it."""
    low = text.lower()
    if "limited" in low and "support" in low:
        return "limited"
    if low.startswith("remove support"):
        return "removed"
    if "added support for new operators" in low or "already supported previously" in low:
        return "supported"
    return None


def _label(label: str) -> tuple[str, str]:
    """``package version 1.2.3, SDK 2.13.0`` -> (``1.2.3``, ``2.13.0``); ``2.9.0.0`` -> as is."""
    m = re.match(r"package version (?P<v>[^,]+),\s*SDK (?P<sdk>\S+)", label.strip())
    if m:
        return m["v"].strip(), m["sdk"]
    return label.strip(), ""


def parse_changelog(text: str) -> list[Release]:
    """The releases of torch-neuron's operator changelog, in the document's order (newest
    first), each with the operators its sections add, limit or remove."""
    lines = text.splitlines()
    releases: list[Release] = []
    state: str | None = None
    parents: list[tuple[int, str]] = []  # (indent, text) of open bullets holding no operator
    last: list[Any] | None = None  # the entry a continuation line extends
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        heading = _HEADING.match(line)
        if heading and _UNDERLINE.match(nxt):
            version, sdk = _label(heading["label"])
            releases.append(Release(version, sdk))
            state, parents, last = None, [], None
            continue
        if not releases or _UNDERLINE.match(line) or not line.strip():
            if not line.strip():
                last = None
            continue
        rel = releases[-1]
        date_m = _DATE.match(line)
        if date_m:
            rel.date = date_m["date"]
            continue
        bullet = _BULLET.match(line)
        if bullet is None:
            found = _section_state(line.strip())
            if found is not None:
                state, parents, last = found, [], None
            elif last is not None and line.startswith(" "):
                last[2] = f"{last[2]} {line.strip()}".strip()
            continue
        indent, body = len(bullet["indent"]), bullet["text"].strip()
        parents = [(d, t) for d, t in parents if d < indent]
        op = _OP.match(body)
        if op is None:
            parents.append((indent, body))
            found = _section_state(body)
            if found is not None:
                state = found
            last = None
            continue
        if state is None:
            raise OpListError(f"release {rel.version}: {op['op']} is outside any section")
        note = op["note"].strip()
        if not note and parents:
            note = _clean(parents[-1][1])
        last = [state, op["op"], note]
        rel.entries.append(last)  # type: ignore[arg-type]
    for rel in releases:
        rel.entries = [(s, o, _clean(n)) for s, o, n in rel.entries]
    return releases


def _clean(note: str) -> str:
    """RST markup out of a note: ``x`` -> x, **x** -> x, :ref:`x` -> x."""
    note = re.sub(r":\w+:`([^`]*)`", r"\1", note)
    note = note.replace("``", "").replace("**", "")
    return " ".join(note.split())


def replay(releases: Sequence[Release]) -> dict[str, dict[str, str]]:
    """Each operator's state after the last release, replaying ``releases`` (newest first, as
    the document lists them) from the oldest one on."""
    ops: dict[str, dict[str, str]] = {}
    for rel in reversed(releases):
        for state, op, note in rel.entries:
            if state == "supported" and _CONDITION.match(note):
                state = "limited"
            prev = ops.get(op)
            if prev is not None and prev["status"] == state == "supported" and not note:
                continue  # listed again as already supported: nothing changes
            ops[op] = {"status": state, "since": rel.version, "note": note}
    return dict(sorted(ops.items()))


def parse_table(text: str) -> dict[str, dict[str, str]]:
    """The operators of an RST grid table with one name a row, each ``supported``."""
    ops = {}
    for line in text.splitlines():
        m = _CELL.match(line.strip())
        if m:
            ops[m["op"].replace("\\", "")] = {"status": "supported", "since": "", "note": ""}
    if not ops:
        raise OpListError("no operator rows found in the table")
    return dict(sorted(ops.items()))


def build(kind: str, text: str, commit: str, retrieved: str) -> dict[str, Any]:
    """The JSON document of list ``kind`` (``inf1`` or ``inf2_trn1``) from its RST text."""
    if kind == "inf1":
        releases = parse_changelog(text)
        if not releases:
            raise OpListError("no releases found in the changelog")
        newest = releases[0]
        sdk = f"{PACKAGES[kind]} {newest.version}"
        sdk += f" (Neuron SDK {newest.sdk}, {newest.date})" if newest.sdk else f" ({newest.date})"
        ops = replay(releases)
        method = (
            f"replay of {len(releases)} releases of the changelog, oldest to newest; "
            "the live list is torch.neuron.get_supported_operations() on an Inf1 host"
        )
    elif kind == "inf2_trn1":
        meta = re.search(r":date-modified:\s*(\S+)", text)
        sdk = f"{PACKAGES[kind]} (page modified {meta[1]})" if meta else PACKAGES[kind]
        ops = parse_table(text)
        method = (
            "the page's table, read as is; it is not a complete inference list (neuronx-cc "
            "lowers what torch-xla lowers): torch_neuronx.analyze on an Inf2/Trn1 host is the "
            "authoritative check"
        )
    else:
        raise OpListError(f"unknown list {kind!r}; expected inf1 or inf2_trn1")
    return {
        "targets": TARGETS[kind],
        "package": PACKAGES[kind],
        "source": f"https://github.com/{REPO}/blob/{commit}/{SOURCES[kind]}",
        "rendered": RENDERED[kind],
        "repo": REPO,
        "path": SOURCES[kind],
        "repo_commit": commit,
        "sdk_version": sdk,
        "retrieved": retrieved,
        "method": method,
        "ops": ops,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: writes (or prints) the JSON list built from an RST file."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=sorted(SOURCES))
    p.add_argument("rst", type=Path, help="the RST file, read from an aws-neuron-sdk checkout")
    p.add_argument("--commit", required=True, help="the aws-neuron-sdk commit it was read at")
    p.add_argument("--retrieved", default=date.today().isoformat(), help="YYYY-MM-DD")
    p.add_argument("-o", "--output", type=Path, help="the JSON file (default: stdout)")
    args = p.parse_args(argv)
    if not re.fullmatch(r"[0-9a-f]{40}", args.commit):
        p.error("--commit takes the 40-hex-digit commit the RST was read at")
    try:
        doc = build(args.kind, args.rst.read_text(encoding="utf-8"), args.commit, args.retrieved)
    except (OSError, OpListError) as e:
        print(f"neuron_oplist: {args.rst}: {e}", file=sys.stderr)
        return 1
    text = json.dumps(doc, indent=1, sort_keys=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.output)  # atomic: a reader never sees half a list
    print(f"{args.output}: {len(doc['ops'])} operators ({doc['sdk_version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
