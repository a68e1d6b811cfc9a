"""Runs ONNX node test cases through a backend and judges them as the ONNX runner does."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from neffkit.ir.casts import spec_defined
from neffkit.ir.tensor import onnx_dtype
from neffkit.testing.onnx_cases import Case, is_plain_tensor_case, node_cases


@dataclass
class Outcome:
    """The result of one case: ``passed``, ``failed`` (wrong numbers) or ``error`` (raised)."""

    case: str
    ops: tuple[str, ...]
    status: str
    message: str = ""


def compare(
    ref: np.ndarray,
    got: np.ndarray,
    rtol: float,
    atol: float,
    defined: np.ndarray | None = None,
) -> str:
    """Empty when ``got`` matches ``ref`` (dtype, shape, values within tolerances).

    ``defined`` (a bool mask like ``ref``) leaves out the elements whose value the ONNX spec
    does not define (see :func:`spec_defined_outputs`).
    """
    ref = np.asarray(ref)
    got = np.asarray(got)
    if ref.dtype != got.dtype:
        return f"dtype {got.dtype} != expected {ref.dtype}"
    if ref.shape != got.shape:
        return f"shape {got.shape} != expected {ref.shape}"
    if defined is not None and not defined.all():
        got = np.where(defined, got, ref).astype(ref.dtype)
    if ref.dtype == object:
        return "" if np.array_equal(ref, got) else "values differ"
    try:
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, equal_nan=True)
    except AssertionError as e:
        return str(e).strip().splitlines()[-1][:200]
    except TypeError:
        # float8 / bfloat16 arrays: compare as float32
        np.testing.assert_allclose(
            got.astype(np.float32), ref.astype(np.float32), rtol=rtol, atol=atol, equal_nan=True
        )
    return ""


def compare_value(
    ref: object, got: object, rtol: float, atol: float, defined: np.ndarray | None = None
) -> str:
    """:func:`compare` extended to sequences (lists, element by element) and empty optionals
    (None on both sides); ``defined`` applies to a tensor output."""
    if ref is None or got is None:
        if ref is None and got is None:
            return ""
        return "empty optional" + (" expected" if ref is None else " returned")
    if isinstance(ref, list | tuple) or isinstance(got, list | tuple):
        if not isinstance(ref, list | tuple) or not isinstance(got, list | tuple):
            return "a sequence on one side only"
        if len(ref) != len(got):
            return f"sequence of {len(got)} elements != expected {len(ref)}"
        for k, (r, g) in enumerate(zip(ref, got)):
            msg = compare_value(r, g, rtol, atol)
            if msg:
                return f"element {k}: {msg}"
        return ""
    return compare(ref, got, rtol, atol, defined)  # type: ignore[arg-type]


def run_case(case: Case, runner: Callable[[object, list[np.ndarray]], list]) -> Outcome:
    """Runs every data set of ``case`` through ``runner(model, inputs)`` and judges it."""
    model = case.load_model()
    try:
        for inputs, expected in case.data_sets:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                got = runner(model, inputs)
            if len(got) != len(expected):
                return Outcome(
                    case.name,
                    case.op_types,
                    "failed",
                    f"{len(got)} outputs, expected {len(expected)}",
                )
            defined = spec_defined_outputs(case, inputs, expected)
            for i, (g, e) in enumerate(zip(got, expected)):
                msg = compare_value(e, g, case.rtol, case.atol, defined[i])
                if msg:
                    return Outcome(case.name, case.op_types, "failed", f"output {i}: {msg}")
    except Exception as e:  # noqa: BLE001 - every failure is an outcome, not a crash
        text = str(e).strip().splitlines()
        return Outcome(
            case.name,
            case.op_types,
            "error",
            f"{type(e).__name__}: {text[0][:300] if text else ''}",
        )
    return Outcome(case.name, case.op_types, "passed")


def spec_defined_outputs(
    case: Case, inputs: list[np.ndarray], expected: list[np.ndarray]
) -> list[np.ndarray | None]:
    """Per output, where the ONNX spec defines the expected values (None: everywhere).

    A float -> fixed-point ``Cast`` / ``CastLike`` is undefined for NaN, infinities and values
    out of the target's range; the node cases' expected outputs there are whatever the
    installed ml_dtypes does (0.6 wraps, 0.7 gives 0), so those elements are not compared.
    Every other element, and every other case, is compared in full.
    """
    if not set(case.op_types) <= {"Cast", "CastLike"} or len(expected) != 1 or not inputs:
        return [None] * len(expected)
    x = np.asarray(inputs[0])
    out = np.asarray(expected[0])
    if x.shape != out.shape or out.dtype == object:
        return [None]
    return [spec_defined(x, onnx_dtype(out.dtype))]


def plain_node_cases(ops: Iterable[str] | None = None, *, torch_dtypes: bool = False) -> list[Case]:
    """Node cases whose inputs and outputs are plain tensors, optionally only of ``ops``.

    With ``torch_dtypes``, only cases whose dtypes torch can represent (see
    ``torch_representable``).
    """
    wanted = set(ops) if ops is not None else None
    out = []
    for c in node_cases():
        if not is_plain_tensor_case(c):
            continue
        if torch_dtypes and not torch_representable(c):
            continue
        if wanted is not None and not (set(c.op_types) & wanted):
            continue
        out.append(c)
    return out


#: fp16/bf16 Attention function expansions whose expected outputs carry numpy's per-step
#: 16-bit rounding inside Softmax (bf16 sums accumulate in bf16); torch accumulates in float32
#: and rounds once, a 1-ulp difference (up to 0.004 in bf16) beyond the cases' rtol 1e-3.
#: Every value before the Softmax matches exactly.
HALF_PRECISION_SOFTMAX_CASES = (
    "test_attention_4d_causal_bf16_expanded",
    "test_attention_4d_causal_fp16_expanded",
    "test_attention_4d_padded_kv_bf16_expanded",
    "test_attention_4d_causal_padded_kv_bf16_expanded",
    "test_attention_4d_attn_mask_causal_bf16_expanded",
    "test_attention_3d_causal_bf16_expanded",
)


def model_ops(model: object) -> set[tuple[str, str]]:
    """``(domain, op_type)`` of every node of a ModelProto, subgraphs included (no recursion)."""
    out: set[tuple[str, str]] = set()
    stack = [model.graph]  # type: ignore[attr-defined]
    while stack:
        g = stack.pop()
        for n in g.node:
            out.add(("" if n.domain == "ai.onnx" else n.domain, n.op_type))
            for a in n.attribute:
                if a.HasField("g"):
                    stack.append(a.g)
                stack.extend(a.graphs)
    return out


def all_ops_lowered(model: object) -> bool:
    """True when the torch backend has a lowering for every op the model uses."""
    from neffkit.backends.torch.registry import lookup

    return all(lookup(d, op) is not None for d, op in model_ops(model))


_TORCH_DTYPES = frozenset(
    "float64 float32 float16 bfloat16 float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz "
    "int8 int16 int32 int64 uint8 uint16 uint32 uint64 bool complex64 complex128 "
    # held in carrier dtypes (int8 / uint8 / float32) by the torch backend
    "int4 uint4 int2 uint2 float4_e2m1fn float8_e8m0fnu".split()
)


def torch_representable(case: Case) -> bool:
    """True when every input and output dtype of the case has a torch equivalent.

    int4 / uint4 / int2 / uint2 / float4e2m1 / float8e8m0 count: the torch backend holds them
    in carrier dtypes. Other exotic types (float6 ...) do not, and the per-op tests leave those
    cases out.
    """
    for ins, outs in case.data_sets:
        for a in list(ins) + list(outs):
            if np.asarray(a).dtype.name not in _TORCH_DTYPES:
                return False
    return True


def neffkit_torch_runner(model: object, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """``neffkit.run(model, inputs, backend="torch")`` without the public API's extras."""
    from neffkit.backends.torch import run
    from neffkit.frontends.onnx import load

    return run(load(model), inputs)


def main(argv: list[str] | None = None) -> int:
    """``python -m neffkit.testing.conformance [OP ...] [-v] [--sequences]``: pass rate of the
    torch backend."""
    import argparse
    import collections

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("ops", nargs="*", help="only cases that use these ops")
    p.add_argument("-v", "--verbose", action="store_true", help="print every non-passing case")
    p.add_argument(
        "--sequences",
        action="store_true",
        help="the cases with sequences / optionals instead (node cases and simple models)",
    )
    a = p.parse_args(argv)
    if a.sequences:
        from neffkit.testing.onnx_cases import sequence_cases

        wanted = set(a.ops)
        cases = [c for c in sequence_cases() if not wanted or set(c.op_types) & wanted]
    else:
        cases = plain_node_cases(a.ops or None)
    outcomes = [run_case(c, neffkit_torch_runner) for c in cases]
    per = collections.Counter(o.status for o in outcomes)
    for o in outcomes:
        if o.status != "passed" and (a.verbose or a.ops):
            print(f"{o.status:7} {o.case} [{','.join(o.ops)}]: {o.message}")
    n = len(outcomes)
    print(
        f"{per['passed']}/{n} passed ({100 * per['passed'] / max(n, 1):.1f}%), "
        f"{per['failed']} failed, {per['error']} errors"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
