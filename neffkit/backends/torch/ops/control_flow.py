"""Lowerings of control flow: Loop, If and Scan become small scriptable modules.

No ``from __future__ import annotations`` here: TorchScript reads these modules' class
attribute annotations and cannot resolve them as strings.

Each subgraph is lowered to a child GraphModule called as ``body(inputs, captures)`` (see
``lowering.lower_graph``); the modules below hold the loop or branch in real Python, so the
generated code stays readable and ``torch.jit.script`` keeps the control flow dynamic.
"""

from typing import List, Optional  # noqa: UP035 - TorchScript reads typing annotations

import torch

from neffkit.backends.torch.context import LoweringContext
from neffkit.backends.torch.helpers.dtypes import torch_dtype
from neffkit.backends.torch.registry import Arg, Lowered, Unsupported, lowers
from neffkit.ir.core import Node
from neffkit.ir.types import TensorType


class LoopModule(torch.nn.Module):
    """ONNX Loop: runs ``body`` while ``i < M`` and ``cond``; stacks the scan outputs."""

    n_carried: int
    n_scan: int
    empties: List[torch.Tensor]  # noqa: UP006

    def __init__(
        self,
        body: torch.nn.Module,
        n_carried: int,
        n_scan: int,
        empties: Optional[List[torch.Tensor]] = None,  # noqa: UP006, UP045
    ) -> None:
        super().__init__()
        self.body = body
        self.n_carried = n_carried
        self.n_scan = n_scan
        # what a scan output is when no iteration ran: [0, *row shape] of the row's dtype
        self.empties = list(empties) if empties is not None else []
        self.register_buffer("anchor", torch.zeros(0), persistent=False)

    def forward(
        self,
        trip_count: Optional[torch.Tensor],  # noqa: UP045
        cond: Optional[torch.Tensor],  # noqa: UP045
        carried: List[torch.Tensor],  # noqa: UP006
        captures: List[torch.Tensor],  # noqa: UP006
    ) -> List[torch.Tensor]:  # noqa: UP006
        trip: int = 9223372036854775807  # no trip count: run until cond is false
        if trip_count is not None:
            trip = int(trip_count.item())
        keep: bool = True
        if cond is not None:
            keep = bool(cond.item())
        dev = self.anchor.device
        scans: List[List[torch.Tensor]] = [[] for _ in range(self.n_scan)]  # noqa: UP006
        i = 0
        while i < trip and keep:
            step_in = [
                torch.tensor(i, dtype=torch.int64, device=dev),
                torch.tensor(keep, dtype=torch.bool, device=dev),
            ]
            outs = self.body(step_in + carried, captures)
            keep = bool(outs[0].item())
            carried = outs[1 : 1 + self.n_carried]
            for j in range(self.n_scan):
                scans[j].append(outs[1 + self.n_carried + j])
            i += 1
        result = list(carried)
        for j in range(self.n_scan):
            if len(scans[j]) > 0:
                result.append(torch.stack(scans[j], 0))
            elif j < len(self.empties):
                result.append(self.empties[j].to(dev))
            else:
                result.append(torch.zeros([0], device=dev))
        return result


class IfModule(torch.nn.Module):
    """ONNX If: runs one of two lowered branches."""

    def __init__(self, then_branch: torch.nn.Module, else_branch: torch.nn.Module) -> None:
        super().__init__()
        self.then_branch = then_branch
        self.else_branch = else_branch

    def forward(
        self,
        cond: torch.Tensor,
        then_captures: List[torch.Tensor],  # noqa: UP006
        else_captures: List[torch.Tensor],  # noqa: UP006
    ) -> List[torch.Tensor]:  # noqa: UP006
        no_inputs: List[torch.Tensor] = []  # noqa: UP006
        if bool(cond.reshape(-1)[0].item()):
            return self.then_branch(no_inputs, then_captures)
        return self.else_branch(no_inputs, else_captures)


class ScanModule(torch.nn.Module):
    """ONNX Scan (opset 9+): iterates ``body`` over slices of the scan inputs."""

    n_state: int
    in_axes: List[int]  # noqa: UP006
    in_reverse: List[bool]  # noqa: UP006
    out_axes: List[int]  # noqa: UP006
    out_reverse: List[bool]  # noqa: UP006

    def __init__(
        self,
        body: torch.nn.Module,
        n_state: int,
        in_axes: list[int],
        in_reverse: list[bool],
        out_axes: list[int],
        out_reverse: list[bool],
    ) -> None:
        super().__init__()
        self.body = body
        self.n_state = n_state
        self.in_axes = in_axes
        self.in_reverse = in_reverse
        self.out_axes = out_axes
        self.out_reverse = out_reverse

    def forward(
        self,
        states: List[torch.Tensor],  # noqa: UP006
        scan_in: List[torch.Tensor],  # noqa: UP006
        captures: List[torch.Tensor],  # noqa: UP006
    ) -> List[torch.Tensor]:  # noqa: UP006
        steps = scan_in[0].shape[self.in_axes[0]]
        n_out = len(self.out_axes)
        collected: List[List[torch.Tensor]] = [[] for _ in range(n_out)]  # noqa: UP006
        for t in range(steps):
            slices: List[torch.Tensor] = []  # noqa: UP006
            for j in range(len(scan_in)):
                idx = steps - 1 - t if self.in_reverse[j] else t
                slices.append(scan_in[j].select(self.in_axes[j], idx))
            outs = self.body(states + slices, captures)
            states = outs[: self.n_state]
            for j in range(n_out):
                collected[j].append(outs[self.n_state + j])
        result = list(states)
        for j in range(n_out):
            parts = collected[j]
            if self.out_reverse[j]:
                parts = parts[::-1]
            result.append(torch.stack(parts, self.out_axes[j]))
        return result


def _call_module(ctx: LoweringContext, module: torch.nn.Module, hint: str, *args: Arg) -> Arg:
    name = ctx.submodule(module, hint)
    return ctx.fx.call_module(name, tuple(args))


def _outputs(ctx: LoweringContext, result: Arg, n: int) -> list[Arg]:
    return [ctx.getitem(result, i) for i in range(n)]


@lowers("Loop")
def loop(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Loop(M, cond, v...) {body} -> LoopModule(body)(M, cond, [v...], [captured...])
    body = node.attr("body")
    n_carried = len(node.inputs) - 2
    n_scan = len(body.outputs) - 1 - n_carried
    if n_scan < 0:
        raise Unsupported("Loop body has fewer outputs than loop-carried values")
    body_module, captures = ctx.lower_subgraph(body)
    caps = [ctx.value(v) for v in captures]
    empties = [_empty_scan(v.type) for v in body.outputs[1 + n_carried :]]
    result = _call_module(
        ctx,
        LoopModule(body_module, n_carried, n_scan, empties),
        "loop",
        args[0],
        args[1],
        list(args[2:]),
        caps,
    )
    return _outputs(ctx, result, len(node.outputs))


def _empty_scan(row: object) -> torch.Tensor:
    """The scan output of a Loop that ran no iteration: ``[0, *row shape]`` (``[0]`` when the
    row's shape is unknown) of the row's dtype (float32 when unknown)."""
    if not isinstance(row, TensorType):
        return torch.zeros([0])
    shape = [0, *row.shape] if row.is_static and row.shape is not None else [0]
    return torch.zeros(shape, dtype=torch_dtype(row.dtype))


@lowers("If")
def if_(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # If(cond) {then, else} -> IfModule(then, else)(cond, [captured...], [captured...])
    then_mod, then_caps = ctx.lower_subgraph(node.attr("then_branch"))
    else_mod, else_caps = ctx.lower_subgraph(node.attr("else_branch"))
    result = _call_module(
        ctx,
        IfModule(then_mod, else_mod),
        "if_",
        args[0],
        [ctx.value(v) for v in then_caps],
        [ctx.value(v) for v in else_caps],
    )
    return _outputs(ctx, result, len(node.outputs))


@lowers("Scan")
def scan(ctx: LoweringContext, node: Node, args: list[Arg]) -> Lowered:
    # Scan(state..., xs...) {body} -> ScanModule(body)([state...], [xs...], [captured...])
    if ctx.opset < 9:
        raise Unsupported("Scan before opset 9 (with sequence_lens)")
    body = node.attr("body")
    n_in = node.attr("num_scan_inputs")
    n_state = len(node.inputs) - n_in
    n_out = len(node.outputs) - n_state
    in_axes = list(node.attr("scan_input_axes", [0] * n_in))
    in_dirs = list(node.attr("scan_input_directions", [0] * n_in))
    out_axes = list(node.attr("scan_output_axes", [0] * n_out))
    out_dirs = list(node.attr("scan_output_directions", [0] * n_out))
    in_ranks = [v.shape for v in node.inputs[n_state:]]
    for j, a in enumerate(in_axes):
        if a < 0:
            shape = in_ranks[j]
            if shape is None:
                raise Unsupported("negative scan_input_axes with unknown input rank")
            in_axes[j] = a + len(shape)
    for j, a in enumerate(out_axes):
        if a < 0:
            shape = body.outputs[n_state + j].shape
            if shape is None:
                raise Unsupported("negative scan_output_axes with unknown output rank")
            out_axes[j] = a + len(shape) + 1
    body_module, captures = ctx.lower_subgraph(body)
    module = ScanModule(
        body_module,
        n_state,
        in_axes,
        [bool(d) for d in in_dirs],
        out_axes,
        [bool(d) for d in out_dirs],
    )
    result = _call_module(
        ctx,
        module,
        "scan",
        list(args[:n_state]),
        list(args[n_state:]),
        [ctx.value(v) for v in captures],
    )
    return _outputs(ctx, result, len(node.outputs))
