"""Every registered pass keeps the properties on generated graphs (verifier, ONNX checker,
onnxruntime before == after, the changed flag, a fixed point, text round trip, and the torch
backend on the result), and the torch backend agrees with onnxruntime on every generated graph.

Examples are derandomized (``check_pass(seed=None)`` / ``derandomize=True``), so the file runs
the same graphs every time. The properties that found a pass bug are left out for that pass
only (``KNOWN_BUGS``), with its shrunk reproducer kept below as a strict xfail until fixed;
fixed bugs keep their reproducers as regression tests.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from neffkit.ir.core import Graph
from neffkit.ir.text import parse
from neffkit.optimize import DEFAULT_PIPELINES
from neffkit.passes.registry import available, get_pass
from neffkit.testing import check_backend, check_graph, check_pass, graphs
from neffkit.testing.properties import PROPERTIES
from neffkit.testing.text import model_text

ALL_DTYPES = ("float32", "int64", "float64", "int32", "bool")

#: pass -> properties it is known to break (each with a reproducer test below). Empty: the
#: three bugs these properties found are fixed and their reproducers are regression tests.
KNOWN_BUGS: dict[str, set[str]] = {}


def _builtin_passes() -> list[str]:
    """Passes neffkit ships (other test modules register throwaway passes of their own)."""
    return [n for n in available() if get_pass(n).__module__.startswith("neffkit.")]


def _properties(name: str) -> list[str]:
    return [p for p in PROPERTIES if p not in KNOWN_BUGS.get(name, set())]


@pytest.mark.parametrize("name", _builtin_passes())
def test_pass_properties(name: str) -> None:
    check_pass(get_pass(name), max_examples=500, seed=None, max_ops=12, torch=True,
               properties=_properties(name))  # fmt: skip


@pytest.mark.parametrize("name", _builtin_passes())
def test_pass_properties_nested_control_flow_all_dtypes(name: str) -> None:
    check_pass(get_pass(name), max_examples=200, seed=None, max_ops=12, max_depth=2,
               dtypes=ALL_DTYPES, properties=_properties(name))  # fmt: skip


def test_default_pipeline_properties() -> None:
    check_pass(
        DEFAULT_PIPELINES["torch"],
        max_examples=300,
        seed=None,
        max_ops=12,
        torch=True,
        properties=_properties("pipeline"),
    )


@settings(max_examples=800, deadline=None, derandomize=True, database=None)
@given(graphs(max_ops=12, max_depth=2, dtypes=ALL_DTYPES))
def test_torch_backend_agrees_with_onnxruntime(graph: Graph) -> None:
    check_backend(graph)


# -- regression tests: shrunk reproducers of the bugs the properties found (fixed) --



def test_dce_dead_node_in_a_branch_reaches_a_fixed_point() -> None:
    graph = parse(
        model_text("""g (float[1] x) => (bool y) <bool c = {0}> {
            a = Add(x, x)
            y = If(c) <then_branch = t () => (bool o) { o = Identity(c) },
                       else_branch = e () => (bool p) { d = Add(a, a) p = Identity(c) }>
        }""", opset=18)
    )
    check_graph(get_pass("dce"), graph)


def test_dedup_two_equal_constant_outputs_reach_a_fixed_point() -> None:
    graph = parse(
        model_text("""g (float[1] x) => (float a, float b) {
            a = Constant <value = float {1}> ()
            b = Constant <value = float {1}> ()
        }""", opset=18)
    )
    check_graph(get_pass("dedup"), graph)


def test_torch_pow_broadcasts_a_one_element_exponent() -> None:
    text = "g (float x) => (float[1] y) <float[1] e = {2.0}> { y = Pow(x, e) }"
    graph = parse(model_text(text, opset=18))
    check_backend(graph)
