"""``neffkit optimize``, ``neffkit passes`` and ``neffkit example``: the commands around passes
(run a pipeline and verify it, list the passes, write the example model to run them on)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from neffkit.cli.io import (
    EXIT_MISMATCH,
    EXIT_OK,
    files_read,
    log,
    read_model,
    refuse_overwrite,
    requested_dims,
)
from neffkit.cli.options import (
    AddCommand,
    add_check_arg,
    add_input_args,
    add_tolerance_args,
    add_torchscript_args,
)
from neffkit.errors import NeffkitError

_OPTIMIZE_EPILOG = """\
The default pipeline depends on --target (see `neffkit passes`); --passes replaces it with
pipeline text: passes separated by commas, options in braces, a group in parentheses repeated
until nothing changes (at most max-iter times):

  dedup,cse,(fold{max-bytes=1048576},simplify,dce){max-iter=8}

No output may overwrite a file the command reads (IN, its external data, --inputs) or another
output (exit status 2, nothing written). OUT and its external data file are replaced as a
pair: an interrupted run leaves the old OUT or the new one, whole. With --verify (the default)
onnxruntime runs the input and the target's backend runs the result on the same inputs
(--inputs, or two random sets from --seed in which symbolic dims are 3, then 7, unless --dims
sets them); when they disagree nothing is written and the exit status is 1. The message then
says whether the original itself disagrees (onnxruntime run twice, or the original on the
target's backend), so the passes are not blamed for it.

IN may be a TorchScript file (torch.jit.save; told by its bytes, a pickle or torch.save
checkpoint is refused unread): it is lifted to the IR, its inputs typed by --input-shape or
--inputs. aten ops with no ONNX form stay as they are; onnxruntime cannot run them, so the
original and OUT are then both verified on the torch backend, and OUT declares the aten domain.

example:
  neffkit optimize model.onnx -o model.opt.onnx
  neffkit optimize model.onnx -o model.opt.onnx --dims batch=2,seq=128
  neffkit optimize model.onnx -o model.opt.onnx --target onnxruntime --report report.json
  neffkit optimize model.onnx -o out.onnx --passes "dedup,(fold,cse,dce)" --print-ir-after cse
  neffkit optimize model.pt -o model.opt.onnx --input-shape image=1x1x32x128
"""

_PASSES_EPILOG = """\
example:
  neffkit passes            # every pass, its description and options
  neffkit passes --json
"""

_EXAMPLE_EPILOG = """\
The Conformer OCR model is built in code with random weights (fixed seed): a convolutional
front end for a 1x32xW text-line image, conformer encoder blocks (depthwise Conv1d of kernel
15), and a transformer decoder that greedily emits up to 75 tokens and stops at EOS, exported
with the greedy loop as an ONNX Loop. --batched writes the same weights as a batched model
whose requests stop at chosen lengths: image [batch,1,32,W] and max_tokens [batch] -> tokens
[batch,num_tokens] (a sequence is done at EOS or at max_tokens tokens, then padded with EOS).
--torchscript writes the whole model scripted (greedy loop as TorchScript control flow) with
torch.jit.save instead of ONNX; other commands read it with --input-shape image=1x1x32xW.

example:
  neffkit example conformer -o conformer.onnx
  neffkit example conformer --batched -o conformer_batch.onnx
  neffkit example conformer --part encoder --width 256 -o encoder.onnx
  neffkit example conformer --torchscript -o conformer.pt   # scripted, torch.jit.save
"""


def register(add: AddCommand) -> None:
    """Adds ``optimize``, ``passes`` and ``example`` to the ``neffkit`` parser."""
    from neffkit.optimize import TARGETS

    s = add("optimize", "optimize a model and verify it against the original", _OPTIMIZE_EPILOG)
    s.add_argument("model", metavar="IN", help="the model to optimize (.onnx or TorchScript)")
    s.add_argument("-o", "--output", required=True, metavar="OUT", help="optimized .onnx file")
    s.add_argument("--passes", metavar="PIPELINE", help="pipeline text (default: the target's)")
    s.add_argument("--target", default="torch", choices=TARGETS, help="backend (default torch)")
    s.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare onnxruntime on IN with the target backend on OUT (default: on)",
    )
    add_input_args(s)
    add_tolerance_args(s)
    add_check_arg(s)
    add_torchscript_args(s)
    s.add_argument("--report", metavar="REPORT.json", help="write the full report as JSON")
    s.add_argument(
        "--verify-each", action="store_true", help="check numerics after every pass (slow)"
    )
    s.add_argument(
        "--print-ir-after",
        action="append",
        metavar="PASS",
        help="print the IR after PASS when it changed something (repeatable, or 'all')",
    )
    s.add_argument("--time-passes", action="store_true", help="list every pass run with its time")
    s.add_argument(
        "--keep-overridable-inputs",
        action="store_true",
        help="IR v3 inputs that have an initializer stay inputs (not folded as constants)",
    )
    s.add_argument(
        "--max-constant-bytes",
        type=int,
        default=64 * 1024 * 1024,
        help="no pass creates a constant larger than this (default 64 MiB)",
    )
    s.add_argument(
        "--external-data",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="weights in a data file beside OUT (default: when IN had them or > 2 GiB)",
    )
    s.set_defaults(func=cmd_optimize)

    s = add("passes", "list the passes and their options", _PASSES_EPILOG)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_passes)

    s = add("example", "write the embedded example model", _EXAMPLE_EPILOG)
    s.add_argument("name", choices=["conformer"], help="which example")
    s.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="where to write it")
    s.add_argument(
        "--part",
        default="full",
        choices=["full", "encoder", "decoder-step"],
        help="the whole model (default), the encoder, or one decoder step",
    )
    s.add_argument("--width", type=int, default=128, help="image width (multiple of 4)")
    s.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    s.add_argument(
        "--batched",
        action="store_true",
        help="the whole model with a symbolic batch and a max_tokens input (requests of "
        "chosen lengths)",
    )
    s.add_argument(
        "--torchscript",
        action="store_true",
        help="the whole model scripted and saved with torch.jit.save (a .pt), not ONNX",
    )
    s.set_defaults(func=cmd_example)


def cmd_optimize(args: argparse.Namespace) -> int:
    """``neffkit optimize``."""
    from neffkit import files
    from neffkit.api import mentioning, npz_inputs
    from neffkit.optimize import optimize, save_optimized

    model, out = args.model, args.output
    writes = [files.Write(out, "the output model", model=True)]
    if args.report:
        writes.append(files.Write(args.report, "the report"))
    files.check_writes(writes, {model: "the input model", args.inputs: "the inputs file"})
    graph = read_model(args, model)
    files.check_writes(writes, files_read(model, graph, args.inputs))
    dims = requested_dims(args, graph)
    inputs = npz_inputs(graph, args.inputs) if args.inputs else None
    progress = _Progress(sys.stderr, enabled=bool(args.verbose) or sys.stderr.isatty())
    with mentioning(model):
        optimized, report = optimize(
            graph,
            args.passes,
            args.target,
            verify=args.verify,
            inputs=inputs,
            seed=args.seed,
            dims=dims,
            atol=args.atol,
            rtol=args.rtol,
            keep_overridable_inputs=args.keep_overridable_inputs,
            max_constant_bytes=args.max_constant_bytes,
            verify_each=args.verify_each,
            print_ir_after=args.print_ir_after,
            progress=progress,
            copy=False,
            external_data=args.external_data,
        )
    progress.done()
    print(f"{model}: target {args.target}, pipeline {report.pipeline}")
    if args.time_passes:
        for r in report.passes.records:
            flag = "changed" if r.changed else "       "
            print(f"  {r.seconds:8.3f}s  {flag}  {r.spec}  {r.nodes_before}->{r.nodes_after}")
    print(report.passes.table())
    if report.aten_ops:
        how = "verified on the torch backend (original and result), " if args.verify else ""
        print(
            f"\n{model}: keeps aten ops with no ONNX form ({', '.join(report.aten_ops)}); "
            f"onnxruntime cannot run them: {how}OUT declares the 'aten' domain and runs on the "
            "torch backend (neffkit run, neffkit convert)"
        )
    if report.verification is not None:
        report.verification.candidate = f"{out} (the optimized model)"
        print()
        print(report.verification)
    if args.report:
        files.write_text(args.report, json.dumps(report.to_dict(), indent=2, default=str))
        print(f"wrote {args.report}")
    if not report.ok:
        if report.diagnosis:
            why = f"{report.diagnosis}; the passes are not to blame for that"
            hint = "(--no-verify writes it anyway)"
        else:
            why = "the optimized model does not match the original"
            hint = "(rerun with --verify-each to find the pass, or --no-verify to write it anyway)"
        print(f"neffkit: {out} not written: {why} {hint}", file=sys.stderr)
        return EXIT_MISMATCH
    log.info("writing %s", out)
    save_optimized(optimized, report, out, external_data=args.external_data)  # the verified bytes
    print(f"wrote {out}")
    return EXIT_OK


def cmd_passes(args: argparse.Namespace) -> int:
    """``neffkit passes``."""
    from neffkit.optimize import DEFAULT_PIPELINES
    from neffkit.passes.registry import all_passes
    from neffkit.passes.rewrite.registry import RuleSet

    rows = []
    for cls in all_passes():
        row = {
            "name": cls.name,
            "description": cls.description,
            "module": cls.__module__,
            "options": [
                {"name": n, "type": t, "default": d, "help": h} for n, t, d, h in cls.options()
            ],
        }
        rule_set = getattr(cls, "rules", None)  # a pass that runs rewrite rules lists them
        if isinstance(rule_set, RuleSet):
            row["rules"] = [
                {"name": r.name, "ops": list(r.ops), "pattern": r.pattern} for r in rule_set.rules()
            ]
        rows.append(row)
    if args.json:
        print(
            json.dumps(
                {"passes": rows, "default_pipelines": DEFAULT_PIPELINES}, indent=2, default=str
            )
        )
        return EXIT_OK
    for r in rows:
        print(f"{r['name']:<19} {r['description']}")
        for o in r["options"]:
            extra = f"  {o['help']}" if o["help"] else ""
            print(f"{'':<22}{o['name']}={o['default']!r} ({o['type']}){extra}")
        if r.get("rules"):
            print(f"{'':<22}rules:")
            for rule in r["rules"]:
                print(f"{'':<24}{rule['name']:<30} {rule['pattern']}")
    print("\ndefault pipelines (neffkit optimize --target T):")
    for target, text in DEFAULT_PIPELINES.items():
        print(f"  {target:<12}{text}")
    return EXIT_OK


def cmd_example(args: argparse.Namespace) -> int:
    """``neffkit example``."""
    from neffkit import files
    from neffkit.examples import (
        export_conformer_batch_onnx,
        export_conformer_onnx,
        export_conformer_torchscript,
        export_decoder_step_onnx,
        export_encoder_onnx,
    )

    if args.width <= 0 or args.width % 4:
        raise NeffkitError(f"--width must be a positive multiple of 4, got {args.width}")
    if args.batched and args.part != "full":
        raise NeffkitError(
            f"--batched writes the whole model; it cannot go with --part {args.part}"
        )
    if args.torchscript and (args.batched or args.part != "full"):
        other = "--batched" if args.batched else f"--part {args.part}"
        raise NeffkitError(f"--torchscript writes the whole model; it cannot go with {other}")
    refuse_overwrite(args.output, {}, "the example model")
    if args.torchscript:
        t = time.perf_counter()
        export_conformer_torchscript(args.output, width=args.width, seed=args.seed)
        size = os.path.getsize(args.output)
        print(
            f"wrote {args.output}: Conformer OCR (full, TorchScript, width {args.width}, seed "
            f"{args.seed}), {size / 1e6:.1f} MB in {time.perf_counter() - t:.1f}s; its input: "
            f"--input-shape image=1x1x32x{args.width}"
        )
        return EXIT_OK
    export = {
        "full": export_conformer_batch_onnx if args.batched else export_conformer_onnx,
        "encoder": export_encoder_onnx,
        "decoder-step": export_decoder_step_onnx,
    }[args.part]
    part = "full, batched" if args.batched else args.part
    t = time.perf_counter()
    blob = export(None, width=args.width, seed=args.seed).SerializeToString()
    files.write_bytes(args.output, blob)
    size = len(blob)
    print(
        f"wrote {args.output}: Conformer OCR ({part}, width {args.width}, seed {args.seed}), "
        f"{size / 1e6:.1f} MB in {time.perf_counter() - t:.1f}s"
    )
    return EXIT_OK


class _Progress:
    """A one-line progress display on a terminal; plain lines with -v elsewhere."""

    def __init__(self, stream: Any, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.shown = False

    def __call__(self, name: str, step: int, total: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        line = f"neffkit: pass {step}: {name} ({elapsed:.1f}s)"
        if self.tty:
            self.stream.write("\r" + line.ljust(60))
            self.shown = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self.tty and self.shown:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()
