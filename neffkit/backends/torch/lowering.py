"""Graph -> ``torch.fx.GraphModule``: one fx node per torch call, readable generated code.

Initializers become buffers (``self.<name>``), graph inputs become ``forward`` arguments, and
each ONNX node is lowered by its registered function (see ``registry``). Subgraphs (Loop
bodies, If branches) become child GraphModules with the signature
``forward(inputs: List[Tensor], captures: List[Tensor]) -> List[Tensor]``, where ``captures``
are the outer values the subgraph reads.

The top of the torch backend: it imports ``registry``, ``context``, ``convert`` and the helpers;
nothing below imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, List  # noqa: UP035 - TorchScript reads typing.List annotations

import torch
import torch.fx as fx

from neffkit.backends.torch.context import LoweringContext, read_value
from neffkit.backends.torch.convert import from_carrier, py_name, to_numpy, to_torch
from neffkit.backends.torch.helpers.sequences import input_type_expr
from neffkit.backends.torch.helpers.shape_values import track
from neffkit.backends.torch.registry import Unsupported, as_list, lookup
from neffkit.errors import BackendError, describe_node
from neffkit.ir.core import Graph, Value

# Read here by neffkit.api, neffkit.compare and neffkit.verify (they live in convert).
__all__ = ["from_carrier", "lower_graph", "quiet_call", "to_numpy", "to_torch"]


def lower_graph(
    graph: Graph,
    *,
    captures: Sequence[Value] = (),
    list_io: bool = False,
    class_name: str = "NeffkitModule",
) -> fx.GraphModule:
    """Lowers ``graph`` to a GraphModule.

    Args:
        graph: the graph to lower.
        captures: outer values a subgraph reads (subgraphs only).
        list_io: subgraph calling convention: ``forward(inputs, captures) -> List[Tensor]``.
        class_name: the generated module's class name.

    Raises:
        BackendError: an op has no lowering or a lowering refuses the node (names both).
    """
    root = torch.nn.Module()
    g = fx.Graph()
    ctx = LoweringContext(g, root, graph, lower_graph)
    env = ctx.env
    if list_io:
        ins = g.placeholder("inputs", type_expr=List[torch.Tensor])  # noqa: UP006
        caps = g.placeholder("captures", type_expr=List[torch.Tensor])  # noqa: UP006
        for i, v in enumerate(graph.inputs):
            env[v] = _named(ctx.getitem(ins, i), v, ctx)
        for i, v in enumerate(captures):
            env[v] = _named(ctx.getitem(caps, i), v, ctx)
    else:
        for v in graph.inputs:
            if v.const is not None:
                continue  # IR v3: an input with an initializer is used as the constant
            env[v] = g.placeholder(ctx._fresh(py_name(v.name, "input")), input_type_expr(v))
    for node in graph:
        ctx.node = node
        args = [None if v is None else read_value(v, env, ctx) for v in node.inputs]
        fn = lookup(node.domain, node.op_type)
        if fn is None:
            raise BackendError(
                f"{describe_node(node)}: the torch backend has no lowering for op "
                f"'{node.domain + '::' if node.domain else ''}{node.op_type}' "
                f"(opset {ctx.opset})"
            )
        try:
            result = as_list(fn(ctx, node, args))
        except Unsupported as e:
            raise BackendError(
                f"{describe_node(node)}: not supported by the torch backend: {e}"
            ) from e
        except BackendError:
            raise
        except RecursionError as e:
            raise BackendError(f"{describe_node(node)}: subgraphs nested too deeply") from e
        except Exception as e:  # noqa: BLE001 - a node the lowering cannot make sense of
            text = " ".join(str(e).split()) or type(e).__name__
            raise BackendError(
                f"{describe_node(node)}: the torch backend cannot lower this node "
                f"({type(e).__name__}: {text}); the model may be invalid"
            ) from e
        if len(result) < len(node.outputs):
            # Trailing optional outputs the lowering does not produce must be unused.
            for v in node.outputs[len(result) :]:
                if v.num_uses or v.is_graph_output:
                    raise BackendError(
                        f"{describe_node(node)}: optional output '{v.name}' is used but the "
                        "torch backend does not compute it"
                    )
        for v, r in zip(node.outputs, result):
            env[v] = _named(r, v, ctx)
        track(ctx, node)
    outs = [read_value(v, env, ctx) for v in graph.outputs]
    g.output(list(outs) if list_io else tuple(outs))
    gm = fx.GraphModule(root, g, class_name=class_name)
    _drop_dead_code(gm)
    quiet_call(gm)
    return gm


def quiet_call(gm: fx.GraphModule) -> None:
    """Calls of ``gm`` no longer print torch.fx's annotated traceback to stderr on failure.

    Each GraphModule has a class of its own whose ``__call__`` torch.fx wraps to print the
    generated code around a failing line; neffkit reports the failure as one ``BackendError``
    instead, so that wrapper is replaced by the plain ``Module.__call__`` (``recompile()``
    puts it back).
    """
    type(gm).__call__ = torch.nn.Module.__call__


def _drop_dead_code(gm: fx.GraphModule) -> None:
    """Removes unused pure nodes (shape tensors whose sizes went to torch as Python ints,
    constants folded into literals) and the buffers only they read."""
    if not gm.graph.eliminate_dead_code():
        return
    gm.recompile()
    read = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_buffers(recurse=False)):
        if name not in read:
            delattr(gm, name)


def _named(r: Any, v: Value, ctx: LoweringContext) -> Any:
    """Gives an fx node the ONNX value's name so the generated code reads like the model."""
    if isinstance(r, fx.Node) and v.name and r.op not in ("placeholder", "get_attr"):
        try:
            r._rename(py_name(v.name))
        except Exception:  # noqa: BLE001 - naming is cosmetic; never fail the lowering for it
            pass
    return r
