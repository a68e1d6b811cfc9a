"""The Neuron supported-operator lists shipped with neffkit (``oplists/*.json``), checked.

Each list names its source (URL and repository commit), the SDK version it describes and the
day it was read; ``tools/neuron_oplist.py`` rebuilds ``inf1.json`` and ``inf2_trn1.json`` from
the Neuron documentation's RST. An entry's ``status`` is ``supported``, ``limited`` (a
condition in ``note``), ``removed`` (the reason in ``note``) or ``cpu_fallback``. A list that
could not be read says why in ``unavailable`` and holds no entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from neffkit.errors import BackendError

TARGETS = ("inf1", "inf2", "trn1", "trn2")
#: the list each target reads
LIST_OF = {"inf1": "inf1", "inf2": "inf2_trn1", "trn1": "inf2_trn1", "trn2": "trn2"}
STATUSES = ("supported", "limited", "removed", "cpu_fallback")


@dataclass(frozen=True)
class OpList:
    """One supported-operator list and where it comes from."""

    name: str
    source: str
    repo_commit: str | None
    sdk_version: str | None
    retrieved: str | None
    method: str
    unavailable: str
    ops: Mapping[str, Mapping[str, str]]

    def describe(self) -> str:
        """One line naming the list's source, commit, version and date."""
        if self.unavailable:
            return f"{self.name}: {self.source} (not read)"
        return (
            f"{self.name}: {self.source} (commit {str(self.repo_commit)[:8]}, "
            f"{self.sdk_version}, retrieved {self.retrieved})"
        )


@cache
def load_oplist(name: str) -> OpList:
    """The list ``name`` (``inf1``, ``inf2_trn1``, ``trn2``) shipped with neffkit, checked."""
    if name not in set(LIST_OF.values()):
        raise BackendError(f"no Neuron operator list {name!r}; expected one of {_lists()}")
    path = resources.files(__package__).joinpath("oplists", f"{name}.json")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BackendError(f"oplists/{name}.json: unreadable ({e})") from e
    return _checked(name, doc)


def _lists() -> list[str]:
    return sorted(set(LIST_OF.values()))


def _checked(name: str, doc: Any) -> OpList:
    """The list of a parsed JSON document, or a BackendError saying what it lacks."""
    where = f"oplists/{name}.json"
    if not isinstance(doc, dict) or not isinstance(doc.get("ops"), dict):
        raise BackendError(f"{where}: not an object with an 'ops' object")
    if not isinstance(doc.get("source"), str) or not doc["source"].startswith("https://"):
        raise BackendError(f"{where}: 'source' must be the https URL the list was read from")
    unavailable = doc.get("unavailable") or ""
    if unavailable:
        if doc["ops"]:
            raise BackendError(f"{where}: a list marked unavailable must have no entries")
    else:
        commit = doc.get("repo_commit")
        if not isinstance(commit, str) or len(commit) != 40:
            raise BackendError(f"{where}: 'repo_commit' must be a 40-hex-digit commit")
        for key in ("sdk_version", "retrieved"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise BackendError(f"{where}: '{key}' is missing")
    for op, entry in doc["ops"].items():
        if not isinstance(entry, dict) or entry.get("status") not in STATUSES:
            raise BackendError(f"{where}: {op}: status must be one of {', '.join(STATUSES)}")
    return OpList(
        name,
        doc["source"],
        doc.get("repo_commit"),
        doc.get("sdk_version"),
        doc.get("retrieved"),
        doc.get("method", ""),
        unavailable,
        doc["ops"],
    )
