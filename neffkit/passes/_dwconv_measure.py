"""How ``dwconv{strategy=auto}`` times the forms of one depthwise Conv on the target backend,
and the on-disk cache of those timings.

Each candidate (the original Conv and each form) becomes a standalone graph of one input,
prepared once on the target backend (through :mod:`neffkit.execution`: a pass never imports a
backend) and called in interleaved rounds, so drift of a shared machine hits every candidate
alike; the median call time counts. Rounds go on until ``budget`` seconds have passed (at
least 1, at most 200; the first timed call counts as a sample). The original is called first;
a form whose first call (setup included) takes over 4 times the original's timed call, or
whose timed call takes over twice the original's, cannot win: it keeps that time and is not
called again. A shape costs about ``budget`` plus preparing the graphs and two calls of each.

A cache entry is one JSON file per key (shapes, attributes, dtype, target, backend name and
version, device, candidates), named by the key's SHA-256, written atomically
(:func:`neffkit.files.write_text`); a file that does not parse or does not hold the key it is
named for is ignored with a warning and measured again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from neffkit.errors import NeffkitError
from neffkit.execution import Runner, get_backend
from neffkit.files import write_text
from neffkit.ir.core import Graph
from neffkit.passes._dwconv_forms import Depthwise, standalone

log = logging.getLogger("neffkit.passes")

#: bumped when the timing method or the forms change, so old entries are measured again
CACHE_VERSION = 1
ENV_CACHE_DIR = "NEFFKIT_CACHE_DIR"
MAX_ROUNDS = 200
SLOW = 2.0
SLOW_SETUP = 4.0
#: backends whose timings ``auto`` does not take, by name, and why: one that compiles each
#: graph in ``prepare`` would spend minutes per candidate, and what it runs is not what it
#: times (the compiled graph of one shape)
UNMEASURABLE = {
    "neuron": "it compiles each graph ahead of time in prepare (minutes per candidate)",
}


def cache_dir() -> Path:
    """Where measurements are kept: ``$NEFFKIT_CACHE_DIR``, else the user's cache folder."""
    given = os.environ.get(ENV_CACHE_DIR)
    if given:
        return Path(given)
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "neffkit"


def backend_key(target: str, device: Any) -> dict[str, Any]:
    """The backend part of a cache key: name, version and device.

    Raises:
        NeffkitError: ``target`` is not a backend that can run graphs here.
    """
    backend = get_backend(target)
    return {"target": target, "backend": backend.name, "version": backend.version(),
            "device": "default" if device is None else str(device)}  # fmt: skip


def cache_file(key: dict[str, Any]) -> Path:
    """The cache file of ``key``."""
    text = json.dumps(key, sort_keys=True)
    return cache_dir() / "dwconv" / (hashlib.sha256(text.encode()).hexdigest()[:32] + ".json")


def load(key: dict[str, Any]) -> dict[str, float] | None:
    """The cached timings (form -> seconds) of ``key``, or None (missing or unusable)."""
    path = cache_file(key)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("dwconv: cannot read the cache file %s (%s); measuring again", path, e)
        return None
    try:
        entry = json.loads(text)
        if entry["key"] != key:
            raise ValueError("it holds another key")
        times = {str(k): float(v) for k, v in entry["seconds"].items()}
        if set(times) != set(key["candidates"]):
            raise ValueError("its candidates are not the key's")
        return times
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("dwconv: ignoring the corrupt cache file %s (%s); measuring again", path, e)
        return None


def store(key: dict[str, Any], seconds: dict[str, float]) -> None:
    """Writes the timings of ``key`` atomically; a cache that cannot be written is a warning."""
    path = cache_file(key)
    text = json.dumps({"key": key, "seconds": seconds}, sort_keys=True, indent=1) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    except (OSError, NeffkitError) as e:
        log.warning("dwconv: cannot write the cache file %s (%s)", path, e)


def measure(
    dw: Depthwise, forms: list[str], target: str, device: Any, opset: int, budget: float
) -> dict[str, float]:
    """Median seconds per call of each of ``forms`` (``original`` included) on ``target``;
    a form the backend cannot prepare or run gets ``inf`` (a debug log says why)."""
    batch = dw.batch
    rng = np.random.default_rng(0)
    x = rng.standard_normal([batch, dw.channels, *dw.spatial]).astype(dw.weight.dtype)
    feeds = {"x": x}
    runners: dict[str, Runner] = {}
    times: dict[str, float] = {f: float("inf") for f in forms}
    first: dict[str, float] = {}
    base = float("inf")
    # the original first: a form whose very first call (setup included) takes SLOW_SETUP times
    # the original's timed call cannot win, and is not called again
    for form in sorted(forms, key=lambda f: f != "original"):
        graph: Graph = standalone(dw, form, batch, opset)
        try:
            runner = Runner(graph, target, device=device)
            start = time.perf_counter()
            runner(feeds)  # the first call pays for lazy setup
            warm = time.perf_counter() - start
            times[form] = warm
            if warm > SLOW_SETUP * base:
                continue
            start = time.perf_counter()
            runner(feeds)
            first[form] = times[form] = time.perf_counter() - start
        except NeffkitError as e:
            log.debug("dwconv: %s cannot run on %s: %s", form, target, e)
            times[form] = float("inf")
            continue
        runners[form] = runner
        if form == "original":
            base = first[form]
    # a form over SLOW times the original on its timed call cannot win: not timed further
    runners = {f: r for f, r in runners.items() if first[f] <= SLOW * base}
    if not runners:
        return times
    samples: dict[str, list[float]] = {f: [first[f]] for f in runners}
    end = time.perf_counter() + budget
    for n in range(MAX_ROUNDS):
        if n and time.perf_counter() >= end:
            break
        for form, runner in runners.items():
            start = time.perf_counter()
            runner(feeds)
            samples[form].append(time.perf_counter() - start)
    for form, s in samples.items():
        times[form] = statistics.median(s)
    return times


def all_failed(seconds: dict[str, float]) -> bool:
    """True when no candidate ran (every time ``inf``): the target cannot run them here."""
    return all(t == float("inf") for t in seconds.values())


def choose(seconds: dict[str, float], min_gain: float) -> str:
    """The fastest form, or ``original`` unless a form beats it by at least ``min_gain``
    (a fraction): ``auto`` never keeps a form measured slower than the original."""
    base = seconds.get("original", float("inf"))
    best = min(seconds, key=lambda f: (seconds[f], f != "original"))
    if best == "original" or not seconds[best] <= base * (1.0 - min_gain):
        return "original"
    return best
