"""The Markdown report of ``bench/decoders_gpu.py``: one row per variant, the floor, the
pipelines, what each unit reads on the host, and the failures."""

from __future__ import annotations

from typing import Any


def _f(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def markdown(data: dict[str, Any]) -> str:
    """The results as Markdown: one row per variant, then the floor and the failures."""
    cpu = data["device"] == "cpu"
    title = "CPU smoke run (not GPU numbers)" if cpu else f"on {data['card']}"
    cmd = "python bench/decoders_gpu.py --device cpu" + (" --quick" if data["quick"] else "")
    lines = [
        f"# Conformer decoder forms: host loop against captured graphs, {title}",
        "",
        f"`{cmd if cpu else 'python3 bench/decoders_gpu.py'}` on {data['card']}, torch "
        f"{data['torch']}, batch 1, fp32 (TF32 off); {data['tokens']} tokens out, every "
        "variant checked against onnxruntime on the CPU. Request = encoder + decoder + host "
        "epilogue, median of the timed requests; decoder ms/step = (request - encoder) / steps "
        "computed; step ms = one unit call alone on the first step's state (the step; for "
        "partitions, the first partition's call over its steps). CPU runs use one thread.",
        "",
        "Encoder alone (ms): "
        + ", ".join(f"{k} {_f(v)}" for k, v in data["encoder_ms"].items())
        + ".",
        "",
        "| variant | tokens = ort | build s (passes + lower) | capture/compile s | request ms "
        "(p90) | decoder ms/step | step ms | steps computed | unit calls |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["rows"]:
        b = data["builds"].get(r.get("graph", ""), {})
        build = (b.get("passes_s") or 0) + (b.get("lower_s") or 0) if b else None
        cc = r.get("capture_s", r.get("compile_s"))
        step = r.get("step_ms")
        if step is None and r.get("partition_ms"):
            step = r["partition_ms"][0] / r["partition_steps"][0]
        if not r.get("ok") and "error" in r:
            lines.append(f"| ({r['variant']}) {r['name']} | FAIL | | | | | | | |")
            continue
        lines.append(
            f"| ({r['variant']}) {r['name']} | {r.get('tokens_equal')} | {_f(build, '.1f')} | "
            f"{_f(cc, '.1f')} | {_f(r.get('request_ms'), '.2f')} "
            f"({_f(r.get('request_p90_ms'), '.2f')}) | {_f(r.get('decoder_ms_per_step'))} | "
            f"{_f(step)} | {r.get('steps_computed')} | {r.get('unit_calls')} |"
        )
    parts = [r for r in data["rows"] if r.get("partition_ms")]
    for r in parts:
        ms = ", ".join(f"{m:.2f}" for m in r["partition_ms"])
        lines += [
            "",
            f"({r['variant']}) partition units of {r['partition_steps']} steps: {ms} ms a call",
        ]
    for r in data["rows"]:
        skips = r.get("inductor_counters", {}).get("inductor", {}).get("cudagraph_skips")
        if "inductor_counters" in r:
            kept = "skipped CUDA graphs" if skips else "kept CUDA graphs"
            lines += ["", f"({r['variant']}) inductor {kept} (cudagraph_skips: {skips or 0})."]
        if r.get("cut_at"):
            lines += [
                "",
                f"({r['variant']}) one unit up to {r['cut_at']}; it and the rest run on the host.",
            ]
    if cpu:
        lines += [
            "",
            "On the CPU nothing is captured: (c), (d) and (f) run their units eagerly from their "
            "static inputs, and (e) is inductor without CUDA graphs.",
        ]
    fl = data["floor"]
    if "bandwidth_GBps" in fl:
        lines += [
            "",
            f"Floor: a {fl['copy_bytes'] >> 20} MiB device copy moves "
            f"{fl['bandwidth_GBps']:.0f} GB/s (read + written)",
        ]
    else:
        lines += ["", f"Floor: not measured ({fl.get('error', 'the run stopped before')})."]
    if "floor_step_us" in fl:
        lines[-1] += (
            f"; the padded step's {fl['step_weight_bytes'] / 1e6:.2f} MB of constants read once "
            f"take {fl['floor_step_us']:.2f} us a step, {fl['floor_request_ms']:.3f} ms a request "
            f"(encoder's {fl['encoder_weight_bytes'] / 1e6:.2f} MB included)."
        )
    lines += ["", "Pipelines:", ""]
    lines += [
        f"- {k}: `{b['pipeline']}` ({b.get('nodes', '?')} nodes)" for k, b in data["builds"].items()
    ]
    reads = [(r["variant"], r["host_reads"]) for r in data["rows"] if r.get("host_reads")]
    lines += ["", "Host reads (a unit run on meta tensors: a failure there fails a capture):", ""]
    lines += [f"- ({v}): {h}" for v, h in reads]
    fails = [(r["variant"], r["error"]) for r in data["rows"] if "error" in r]
    fails += [(k, b["error"]) for k, b in data["builds"].items() if "error" in b]
    if fails:
        lines += ["", "Failures:", ""]
        lines += [f"- ({v}): {e}" for v, e in fails]
    return "\n".join(lines)
