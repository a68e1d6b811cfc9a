"""Bench: the embedded Conformer's greedy decoder on CUDA, host loop against captured graphs.

Run it on a machine with a CUDA GPU, from the repository root, with the Python that holds a
CUDA torch (``python3`` on this project's GPU machines: torch, onnx and onnxruntime are there,
nothing else is needed; neffkit is imported from the checkout; where only the files under
``$OUT`` come back, the ``cp`` brings the results)::

    PYTHONUNBUFFERED=1 python3 bench/decoders_gpu.py; cp bench/results/decoders_gpu.* "$OUT"/

It takes about 3 minutes on an H100/H200 (export and passes about 10 s, torch.compile of
the step 30 to 60 s, the rest timing), under 5 in any case: each timing loop stops after
``--budget`` seconds (default 10) even when fewer than ``--requests`` ran. It exits 2 when a
variant failed or gave other tokens (each failure is recorded in the results, and the run goes
on). Should the export fail there, export here (``neffkit example conformer -o
.gpu/conformer.onnx``), carry ``.gpu`` and add ``--model .gpu/conformer.onnx``.

Without a GPU, ``python bench/decoders_gpu.py --device cpu --quick`` (about 20 s here, 2 minutes
with a cold inductor cache) runs every code path but the CUDA-graph capture (the captured units
run eagerly from their static inputs) and writes ``bench/results/decoders_gpu_cpu_smoke.{json,
md}`` instead: CPU numbers are never written under the GPU name.

The model is ``neffkit example conformer`` (image ``[1, 1, 32, 128]``, 75 greedy steps, batch 1,
fp32, TF32 off). Every variant's tokens are checked against onnxruntime on the CPU:

- (a) ``split`` + the default pipeline: the unpadded step, called per token from Python;
- (b) ``pad-loop{max-len=75},split`` + default: the padded step (one static shape), per token;
- (c) the same step replayed from one captured CUDA graph per step (copy-in, replay);
- (d) ``pad-loop,split,unroll`` + default: the whole model up to the final ``Slice`` to the
  length as one captured graph, the slice on the host;
- (e) ``torch.compile(mode="reduce-overhead", fullgraph=True)`` of the padded step, per step;
- (f) partitions of the padded steps (``--boundaries``, default 25+50+75), each one captured
  graph of its steps, the host reading the loop's condition at each boundary. The bench builds
  them from the padded step rather than from ``partition-unroll``'s nested ``If`` branches,
  which the torch backend does not yet hand out as separate units;
- (g) ``pad-loop,split,partition-unroll{boundaries=25+50+75}`` + default, the model the pass
  makes lowered whole and run eagerly (its gate ``If``s read the condition on the host).

``split`` turns the step's ``If`` into a select, which capture needs (an ``If`` reads its
condition on the host). Per variant: build time (passes, lowering), capture or compile time,
request and per-step latency (median of the requests), steps computed and unit calls per
request. The floor is the weights' read time: the bytes of the step's constants over the
bandwidth of a large device copy (bytes read plus written).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import decoder_units as du  # noqa: E402
from bench.common import write_results  # noqa: E402
from bench.decoders_gpu_report import markdown  # noqa: E402

VARIANTS = {
    "a": "eager host loop, unpadded step",
    "b": "eager host loop, padded step",
    "c": "padded step, one CUDA graph per step",
    "d": "full unroll, one CUDA graph",
    "e": "torch.compile reduce-overhead step",
    "f": "partitions, one CUDA graph each",
    "g": "partition-unroll graph, eager (gates on the host)",
}


class Bench:
    """Builds the units once and measures each variant; a failing variant is recorded."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.torch = torch
        self.args = args
        self.device = torch.device(args.device)
        self.rows: list[dict[str, Any]] = []
        self.units: dict[str, Any] = {}
        self.builds: dict[str, dict[str, Any]] = {}
        self.encoder_fns: dict[str, Callable[[], list[Any]]] = {}
        self.encoder_ms: dict[str, float] = {}
        self.encoder_capture_s: dict[str, float] = {}
        self.floor_data: dict[str, Any] = {}
        self.export_s = 0.0
        self.want = np.zeros((1, 0), np.int64)

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def prepare(self) -> None:
        """Exports the model, computes onnxruntime's tokens and builds the three graphs."""
        import onnxruntime as ort

        from neffkit.backends.torch import compile as lower_model
        from neffkit.examples.conformer import example_input, export_conformer_onnx
        from neffkit.optimize import default_pipeline, optimize

        t = time.perf_counter()
        if self.args.model:
            import onnx

            proto = onnx.load(self.args.model)
        else:
            try:
                proto = export_conformer_onnx()
            except Exception as e:
                raise SystemExit(
                    f"exporting the Conformer failed ({_error(e)}): export it where neffkit "
                    "runs (neffkit example conformer -o c.onnx) and pass --model c.onnx"
                ) from e
        self.export_s = time.perf_counter() - t
        self.image_np = example_input()
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        self.want = sess.run(None, {"image": self.image_np})[0]
        self.image = self.torch.from_numpy(self.image_np).to(self.device)
        default = default_pipeline("torch")
        pad = f"pad-loop{{max-len={self.args.max_len}}},split"
        self.pipelines = {
            "unpadded": f"split,{default}",
            "padded": f"{pad},{default}",
            "unrolled": f"{pad},unroll,{default}",
            "partitioned": f"{pad},partition-unroll{{boundaries={self.args.boundaries}}},{default}",
        }
        for key, text in self.pipelines.items():
            info: dict[str, Any] = {"pipeline": text}
            self.builds[key] = info
            try:
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    graph, _ = optimize(proto, text, verify=False)
                info["passes_s"] = time.perf_counter() - t
                info["nodes"] = len(graph)
                t = time.perf_counter()
                if key == "unrolled":
                    self.units[key] = du.cut_static_prefix(graph, self.device)
                elif key == "partitioned":
                    self.units[key] = lower_model(graph, self.device)
                else:
                    self.units[key] = du.cut_at_loop(graph, self.device, self.args.max_len)
                info["lower_s"] = time.perf_counter() - t
            except Exception as e:  # noqa: BLE001 - the variants that need it record it
                info["error"] = _error(e)
                traceback.print_exc()
            print(f"built {key}: {info}", flush=True)

    def need(self, key: str) -> Any:
        if key not in self.units:
            raise RuntimeError(f"the {key} graph was not built: {self.builds[key].get('error')}")
        return self.units[key]

    def timed(self, fn: Callable[[], Any], n: int) -> list[float]:
        """Up to ``n`` timings of ``fn`` in ms (synchronized), fewer past ``--budget`` seconds."""
        out: list[float] = []
        stop = time.perf_counter() + self.args.budget
        while len(out) < n and (len(out) < 3 or time.perf_counter() < stop):
            self.sync()
            t = time.perf_counter()
            fn()
            self.sync()
            out.append((time.perf_counter() - t) * 1e3)
        return out

    def tokens_equal(self, tokens: Any, res: dict[str, Any]) -> bool:
        """Whether ``tokens`` are onnxruntime's; else ``res`` says where they first differ."""
        got = tokens[0] if isinstance(tokens, list | tuple) else tokens
        got = got.detach().cpu().numpy()
        if got.shape == self.want.shape and bool(np.array_equal(got, self.want)):
            return True
        res["tokens_got"] = got.reshape(-1).tolist()
        res["tokens_want"] = self.want.reshape(-1).tolist()
        return False

    # -- encoders ----------------------------------------------------------------------------

    def encoder(self, key: str, form: str) -> Callable[[], list[Any]]:
        """The ``key`` graph's encoder, eager or replayed from one captured graph; its time
        alone is measured on first use (``encoder_ms``)."""
        name = f"{key}/{form}"
        if name not in self.encoder_fns:
            units = self.need(key)
            if form == "eager":
                fn: Callable[[], list[Any]] = lambda: list(units.encoder(self.image))  # noqa: E731
            else:
                t = time.perf_counter()
                replay = du.Replay(lambda x: list(units.encoder(x)), [self.image])
                self.encoder_capture_s[key] = time.perf_counter() - t
                fn = lambda: replay([self.image])  # noqa: E731
            self.encoder_fns[name] = fn
            self.encoder_ms[name] = _median(self.timed(fn, self.args.step_reps))
        return self.encoder_fns[name]

    # -- variants ----------------------------------------------------------------------------

    def step_forms(self) -> dict[str, Callable[[], dict[str, Any]]]:
        return {
            "a": lambda: self.host_loop("unpadded", "eager", "eager"),
            "b": lambda: self.host_loop("padded", "eager", "eager"),
            "c": lambda: self.host_loop("padded", "captured", "captured"),
            "d": self.unrolled,
            "e": lambda: self.host_loop("padded", "captured", "compiled"),
            "f": self.partitions,
            "g": self.partition_unroll,
        }

    def example_state(self, units: Any) -> list[Any]:
        enc = list(units.encoder(self.image))
        cond, carried, caps = units.start(enc)
        return [units.iteration(0), cond, *carried, *caps]

    def host_loop(self, key: str, encoder: str, form: str) -> dict[str, Any]:
        """A host loop over one unit call per step (eager, captured or compiled)."""
        torch = self.torch
        units = self.need(key)
        res: dict[str, Any] = {"graph": key, "encoder": f"{key}/{encoder}"}
        res["body_nodes"] = units.body_nodes
        example = self.example_state(units)
        n_in = 2 + units.n_carried
        flat = du.flat_step(units.step, n_in)
        res["host_reads"] = (
            du.host_reads(units.step, lambda m: du.flat_step(m, n_in), example) or "none"
        )
        t = time.perf_counter()
        if form == "eager":
            state: dict[str, Any] = {}

            def step(args: list[Any]) -> list[Any]:
                if len(args) == n_in or args[n_in] is not None:
                    state["caps"] = args[n_in:]
                return units.step(list(args[:n_in]), state["caps"])

        elif form == "captured":
            step = du.Replay(flat, example)
        else:
            torch._dynamo.reset()
            compiled = torch.compile(flat, mode="reduce-overhead", fullgraph=True)
            caps_held: dict[str, Any] = {}

            def step(args: list[Any]) -> list[Any]:
                if len(args) == n_in or args[n_in] is not None:
                    caps_held["caps"] = args[n_in:]
                if self.device.type == "cuda":
                    torch.compiler.cudagraph_mark_step_begin()
                # a replayed output is overwritten by the next replay: the loop keeps copies
                return [o.clone() for o in compiled(*args[:n_in], *caps_held["caps"])]

            for _ in range(3):  # compile, warm up, record the graph
                step(example)
            self.sync()
            # whether inductor kept CUDA graphs (cudagraph_skips says why not)
            counters = torch._dynamo.utils.counters
            res["inductor_counters"] = {k: dict(v) for k, v in counters.items() if v}
        if form != "eager":
            res["capture_s" if form == "captured" else "compile_s"] = time.perf_counter() - t
        # the captures are copied in once per request: a step alone is timed without them
        again = [*example[:n_in], *([None] * (len(example) - n_in))]
        step(example)
        res["step_ms"] = _median(self.timed(lambda: step(again), self.args.step_reps))
        enc = self.encoder(key, encoder)

        def request() -> tuple[Any, int, int]:
            out, steps = du.run_host_loop(units, enc(), step)
            return out, steps + 1, steps

        return self.measure(res, request)

    def unrolled(self) -> dict[str, Any]:
        """The unrolled model's static prefix as one captured graph, the rest on the host."""
        pre = self.need("unrolled")
        # the encoder subtracted for ms/step: the padded model's, captured (the same nodes)
        res: dict[str, Any] = {"graph": "unrolled", "encoder": "padded/captured"}
        res["cut_at"] = pre.cut
        self.encoder("padded", "captured")
        res["host_reads"] = du.host_reads(pre.prefix, lambda m: m, [self.image]) or "none"
        t = time.perf_counter()
        replay = du.Replay(lambda x: list(pre.prefix(x)), [self.image])
        self.sync()
        res["capture_s"] = time.perf_counter() - t

        def request() -> tuple[Any, int, int]:
            # the full unroll computes every step up to the bound, whatever the output length
            return pre.epilogue(*replay([self.image])), 1, self.args.max_len

        return self.measure(res, request)

    def partitions(self) -> dict[str, Any]:
        """Partitions of the padded steps, each one captured graph; the host stops between."""
        units = self.need("padded")
        bounds = [b for b in _boundaries(self.args.boundaries) if b < units.trip] + [units.trip]
        starts = [0, *bounds[:-1]]
        sizes = [b - s for s, b in zip(starts, bounds)]
        res: dict[str, Any] = {"graph": "padded", "encoder": "padded/captured"}
        res["boundaries"], res["partition_steps"] = bounds, sizes
        example = self.example_state(units)
        res["host_reads"] = (
            du.host_reads(
                units.step, lambda m: du.partition_fn(m, sizes[0], units.n_carried), example
            )
            or "none"
        )
        t = time.perf_counter()
        parts = [
            (s, du.Replay(du.partition_fn(units.step, size, units.n_carried), example))
            for s, size in zip(starts, sizes)
        ]
        self.sync()
        res["capture_s"] = time.perf_counter() - t
        again = [*example[: 2 + units.n_carried], *([None] * (len(example) - 2 - units.n_carried))]
        reps = max(3, self.args.step_reps // 10)
        res["partition_ms"] = []
        for _, p in parts:
            p(example)
            res["partition_ms"].append(_median(self.timed(lambda p=p: p(again), reps)))
        enc = self.encoder("padded", "captured")

        def request() -> tuple[Any, int, int]:
            out, ran = du.run_partitions(units, enc(), parts)
            return out, ran + 1, sum(sizes[:ran])

        return self.measure(res, request)

    def partition_unroll(self) -> dict[str, Any]:
        """``partition-unroll``'s own model, lowered whole: each gate ``If`` reads the loop's
        condition on the host and runs the next partition's branch eagerly."""
        module = self.need("partitioned")
        res: dict[str, Any] = {"graph": "partitioned", "encoder": "padded/eager"}
        self.encoder("padded", "eager")
        bounds = _boundaries(self.args.boundaries)

        def request() -> tuple[Any, int, int]:
            out = module(self.image)
            ran = int(out[0].shape[-1])  # one token a step (the last one EOS when it stopped)
            computed = next((b for b in bounds if b >= ran), ran)
            return out, 1, computed

        return self.measure(res, request)

    def measure(
        self, res: dict[str, Any], request: Callable[[], tuple[Any, int, int]]
    ) -> dict[str, Any]:
        """Checks the tokens, then times whole requests (``request()`` gives the outputs, the
        unit calls and the steps computed); per step = (request - encoder) / steps computed."""
        out, calls, steps = request()
        res["tokens_equal"] = self.tokens_equal(out, res)
        res["unit_calls"], res["steps_computed"] = calls, steps
        times = self.timed(request, self.args.requests)
        res["requests_timed"] = len(times)
        res["request_ms"] = _median(times)
        res["request_p90_ms"] = float(np.percentile(times, 90))
        enc_ms = self.encoder_ms[res["encoder"]]
        res["decoder_ms_per_step"] = (res["request_ms"] - enc_ms) / max(1, steps)
        return res

    def run(self, save: Callable[[], Any]) -> None:
        """Builds, measures the floor, then each variant; ``save()`` after each (partial
        results survive a run that is stopped)."""
        self.prepare()
        try:
            self.floor_data = self.floor()
        except Exception as e:  # noqa: BLE001 - the variants still run
            self.floor_data = {"error": _error(e)}
        forms = self.step_forms()
        for key in self.args.variants.split(","):
            row: dict[str, Any] = {"variant": key, "name": VARIANTS[key]}
            print(f"== ({key}) {VARIANTS[key]}", flush=True)
            try:
                with warnings.catch_warnings(), self.torch.no_grad():
                    warnings.simplefilter("ignore")
                    row.update(forms[key]())
                row["ok"] = bool(row.get("tokens_equal"))
            except Exception as e:  # noqa: BLE001 - a failing variant is a result
                row["ok"] = False
                row["error"] = _error(e)
                traceback.print_exc()
            print({k: v for k, v in row.items() if k != "host_reads"}, flush=True)
            self.rows.append(row)
            save()

    def floor(self) -> dict[str, Any]:
        """The weights' read time: constant bytes over the bandwidth of a large device copy."""
        torch = self.torch
        nbytes = (64 if self.args.quick else 1024) << 20
        src = torch.ones(nbytes // 4, dtype=torch.float32, device=self.device)
        dst = torch.empty_like(src)
        dst.copy_(src)
        times = self.timed(lambda: dst.copy_(src), 10)
        bw = 2 * nbytes / (_median(times) / 1e3)  # bytes read plus written per second
        out: dict[str, Any] = {"copy_bytes": nbytes, "bandwidth_GBps": bw / 1e9}
        if "padded" in self.units:
            units = self.units["padded"]
            step_b, enc_b = du.weight_bytes(units.step), du.weight_bytes(units.encoder)
            out.update(
                step_weight_bytes=step_b,
                encoder_weight_bytes=enc_b,
                floor_step_us=step_b / bw * 1e6,
                floor_request_ms=(enc_b + units.trip * step_b) / bw * 1e3,
            )
        return out


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _boundaries(text: str) -> list[int]:
    return sorted({int(b) for b in text.split("+") if b.strip()})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="few repetitions: a smoke run")
    p.add_argument("--requests", type=int, default=None, help="requests timed (default 30)")
    p.add_argument("--step-reps", type=int, default=None, help="unit calls timed (default 200)")
    p.add_argument("--budget", type=float, default=10.0, help="seconds per timing loop")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--boundaries", default="25+50+75")
    p.add_argument("--max-len", type=int, default=75)
    p.add_argument("--model", default=None, help="a `neffkit example conformer` file to load")
    a = p.parse_args()
    unknown = [v for v in a.variants.split(",") if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {','.join(VARIANTS)}")
    a.requests = a.requests or (2 if a.quick else 30)
    a.step_reps = a.step_reps or (5 if a.quick else 200)
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or with --device cpu for a smoke run")
        return 1
    if a.device == "cpu":
        torch.set_num_threads(1)  # a smoke run on a shared machine: one thread, less noise
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    start = time.perf_counter()
    bench = Bench(a)
    name = "decoders_gpu" if a.device == "cuda" else "decoders_gpu_cpu_smoke"

    def save(final: bool = False) -> str:
        data: dict[str, Any] = {
            "device": a.device,
            "card": torch.cuda.get_device_name(0) if a.device == "cuda" else "CPU",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "quick": a.quick,
            "requests": a.requests,
            "step_reps": a.step_reps,
            "tokens": int(bench.want.shape[-1]),
            "export_s": bench.export_s,
            "encoder_ms": bench.encoder_ms,
            "encoder_capture_s": bench.encoder_capture_s,
            "builds": bench.builds,
            "floor": bench.floor_data,
            "rows": bench.rows,
            "total_s": time.perf_counter() - start,
            "complete": final,
        }
        md = markdown(data)
        if final:
            md += f"\n\nWhole run: {data['total_s']:.0f} s."
        else:
            md += "\n\nPartial results: the run had not finished when this was written."
        write_results(name, data, md)
        return md

    bench.run(save)
    print(save(final=True))
    print(f"wrote bench/results/{name}.json and .md")
    return 0 if all(r.get("ok") for r in bench.rows) else 2


if __name__ == "__main__":
    raise SystemExit(main())
