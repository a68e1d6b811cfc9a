"""Shared bench helpers: timing, machine description, writing results as JSON and Markdown."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, list[float]]:
    """Median wall time of ``repeat`` calls of ``fn`` and all the samples, in seconds."""
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples), samples


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import numpy
    import onnx
    import onnxruntime
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[str, str]:
    """Writes ``bench/results/<name>.json`` and ``.md``; returns both paths."""
    os.makedirs(RESULTS, exist_ok=True)
    data = {"machine": machine(), **data}
    jpath = os.path.join(RESULTS, f"{name}.json")
    mpath = os.path.join(RESULTS, f"{name}.md")
    with open(jpath, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
    with open(mpath, "w") as f:
        f.write(markdown.rstrip() + "\n")
    return jpath, mpath
