"""Preparing a TorchScript graph for lifting: freeze, fold inference context, refuse what cannot
be lifted (before anything is built), so the walker sees only liftable constructs."""

from __future__ import annotations

from typing import Any

from neffkit.errors import FrontendError
from neffkit.frontends.torchscript._base import INT64_MAX, first_line, unsupported

#: Ops whose result is fixed in inference: substituted by False before constant propagation.
_INFERENCE_FALSE = ("aten::is_grad_enabled", "aten::is_autocast_enabled",
                    "prim::requires_grad", "prim::is_nested")  # fmt: skip
#: List mutations: fine on a list built once, refused on a list a loop carries.
_LIST_MUTATIONS = frozenset({"aten::append", "aten::_set_item", "aten::insert", "aten::extend",
                             "aten::pop", "aten::clear", "aten::__setitem__"})  # fmt: skip
_BAD_DTYPES = frozenset({"ComplexFloat", "ComplexDouble", "ComplexHalf", "QInt8", "QUInt8",
                         "QInt32", "QUInt4x2", "QUInt2x4"})  # fmt: skip


def freeze(module: Any) -> Any:
    """Freezes ``module`` in eval mode (freeze makes a copy); the caller's modes are restored."""
    import torch  # noqa: PLC0415

    modes = [(m, m.training) for m in module.modules()]
    try:
        return torch.jit.freeze(module.eval())
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError and others
        raise FrontendError(f"torch.jit.freeze failed on this module: {first_line(e)}") from e
    finally:
        for m, training in modes:
            m.training = training


def fold_inference_context(graph: Any) -> None:
    """Replaces training/autograd queries by False and folds the branches that read them."""
    import torch  # noqa: PLC0415

    for kind in _INFERENCE_FALSE:
        for node in graph.findAllNodes(kind, True):
            const = graph.insertConstant(False)
            const.node().moveBefore(node)
            node.output().replaceAllUsesWith(const)
    torch._C._jit_pass_remove_mutation(graph)
    _functionalize_owned(graph)
    torch._C._jit_pass_constant_propagation(graph)
    torch._C._jit_pass_dce(graph)


#: Ops whose list outputs are separate tensors (a write into one is seen by no other).
_UNSAFE_SPLITS = ("aten::unsafe_chunk", "aten::unsafe_split", "aten::unsafe_split_with_sizes")


def _functionalize_owned(graph: Any) -> None:
    """Makes in-place ops functional where the written tensor is read by nothing else: pieces
    of ``unsafe_chunk`` (what a traced ``GRUCell``/``LSTMCell`` records: ``add_`` and
    ``sigmoid_`` on its gate chunks), and chains of such writes. ``remove_mutation`` leaves
    these because the pieces alias their source."""
    owned: set[Any] = set()
    for node in list(graph.nodes()):
        kind = node.kind()
        if kind == "prim::ListUnpack":
            source = node.inputsAt(0).node()
            if source.kind() in _UNSAFE_SPLITS and len(source.inputsAt(0).uses()) == 1:
                owned.update(node.outputs())
            continue
        if not (kind.startswith("aten::") and kind.endswith("_") and not kind.endswith("__")):
            continue
        target = node.inputsAt(0)
        if target not in owned or len(target.uses()) != 1:
            continue
        functional = graph.create(kind[:-1], list(node.inputs()), 1)
        functional.insertBefore(node)
        functional.copyMetadata(node)
        try:
            functional.schema()
        except RuntimeError:  # no out-of-place form: leave it for check_constructs to refuse
            functional.destroy()
            continue
        functional.output().setType(node.output().type())
        node.output().replaceAllUsesWith(functional.output())
        node.destroy()
        owned.add(functional.output())


def _walk(block: Any) -> Any:
    """``(node, in_raise)`` for every node of ``block`` and its nested blocks, depth first with
    an explicit stack; ``in_raise``: the node's block, or one around it, raises."""
    stack = [(iter(block.nodes()), _raises(block))]
    while stack:
        nodes, raising = stack[-1]
        node = next(nodes, None)
        if node is None:
            stack.pop()
            continue
        yield node, raising
        for b in reversed(list(node.blocks())):
            stack.append((iter(b.nodes()), raising or _raises(b)))


def _raises(block: Any) -> bool:
    return any(n.kind() == "prim::RaiseException" for n in block.nodes())


def check_constructs(graph: Any) -> None:
    """Refuses, before anything is lifted, what has no tensor-graph meaning."""
    import torch  # noqa: PLC0415

    self_value = next(iter(graph.inputs()), None)
    for node, in_raise in _walk(graph):
        kind = node.kind()
        if in_raise:
            continue
        for v in node.outputs():
            t = v.type()
            # attributes freezing left (chains from the module) are read at lift time
            if (
                isinstance(t, torch._C.ClassType)
                and v is not self_value
                and kind != "prim::GetAttr"
            ):
                raise unsupported(node, f"a {t.name()} object (Python/TorchScript class)")
            if isinstance(t, torch._C.DictType):
                raise unsupported(node, "a dict")
            if isinstance(t, torch._C.TensorType) and t.scalarType() in _BAD_DTYPES:
                raise unsupported(node, f"dtype {t.scalarType()}")
        if kind in ("prim::CreateObject", "prim::SetAttr", "prim::CallMethod"):
            raise unsupported(node, "a Python object operation")
        if kind in _LIST_MUTATIONS and _in_loop(node) and not _counted_loops(node):
            raise unsupported(
                node, "a list mutated in a loop; accumulate tensors with torch.cat instead"
            )
        if kind.startswith("aten::") and kind.endswith("_") and not kind.endswith("__"):
            # IR nodes are functional (an unread one is removed): a mutation must be gone
            raise unsupported(
                node,
                "an in-place op torch could not make functional (it writes a graph "
                "input or an alias); write it out of place",
            )
        value = node.output().toIValue() if kind == "prim::Constant" else None
        if isinstance(value, torch.Tensor):
            if value.is_complex() or value.is_quantized:
                raise unsupported(node, f"dtype {value.dtype}")


def _counted_loops(node: Any) -> bool:
    """True when every loop around ``node`` is a ``for`` over a count (no data-dependent
    condition): a list comprehension over ``range(x.dim())``, say, which the lifter unrolls
    when the count is known at lift time (and refuses otherwise)."""
    block = node.owningBlock()
    while block is not None and block.owningNode() is not None:
        owner = block.owningNode()
        if owner.kind() == "prim::Loop":
            trip = owner.inputsAt(0).toIValue()
            cond_in = owner.inputsAt(1).toIValue()
            cond_out = block.returnNode().inputsAt(0).toIValue()
            if trip == INT64_MAX or cond_in is not True or cond_out is not True:
                return False
        block = owner.owningBlock()
    return True


def _in_loop(node: Any) -> bool:
    """True when ``node`` sits in the body of a ``prim::Loop``."""
    block = node.owningBlock()
    while block is not None and block.owningNode() is not None:
        owner = block.owningNode()
        if owner.kind() == "prim::Loop":
            return True
        block = owner.owningBlock()
    return False
