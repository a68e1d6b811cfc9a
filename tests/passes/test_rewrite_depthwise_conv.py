"""``dwconv``: before/after as text, non-cases, every strategy's numbers against onnxruntime on
generated depthwise convs (every attribute combination, onnxruntime and torch), ``auto``'s
choice and its cache, and the Conformer."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from neffkit.errors import NeffkitError
from neffkit.execution import as_graph, run
from neffkit.ir.core import Graph
from neffkit.ir.text import parse, print_body
from neffkit.ir.verifier import verify
from neffkit.passes import PassContext, get_pass, parse_pipeline
from neffkit.passes import _dwconv_measure as measuring
from neffkit.passes._dwconv_forms import analyze
from neffkit.passes.pipeline import PipelineSyntaxError
from neffkit.passes.rewrite.rewriter import Rewriter
from neffkit.testing import check_rewrite, run_checked

H = '<ir_version: 8, opset_import: ["" : 17]>\n'
DwConv = get_pass("dwconv")
FORMS = ("shift-mac", "dense", "unfold-matmul")

CONV_1D = (
    H + "m (float[1,2,5] x) => (float[1,2,5] y) <float[2,1,3] w = {1,2,3,4,5,6}, "
    "float[2] b = {0.5,-1}> { y = Conv <group = 2, pads = [1, 1]> (x, w, b) }"
)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every test measures into a cache folder of its own."""
    monkeypatch.setenv(measuring.ENV_CACHE_DIR, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_shift_mac_as_text() -> None:
    check_rewrite(
        DwConv(strategy="shift-mac"),
        CONV_1D,
        H
        + """m (float[1,2,5] x) => (float[1,2,5] y)
        <float[2,1,3] w = {1,2,3,4,5,6}, float[2] b = {0.5,-1},
         int64[6] dwconv_pads = {0,0,1,0,0,1}, int64[1] dwconv_axes = {2},
         int64[1] dwconv_steps = {1}, int64[1] dwconv_start0 = {0}, int64[1] dwconv_end0 = {5},
         float[2,1] dwconv_w0 = {1,4}, int64[1] dwconv_start1 = {1},
         int64[1] dwconv_end1 = {6}, float[2,1] dwconv_w1 = {2,5},
         int64[1] dwconv_start2 = {2}, int64[1] dwconv_end2 = {7},
         float[2,1] dwconv_w2 = {3,6}, float[2,1] dwconv_bias = {0.5,-1}> {
            dwconv_pad = Pad (x, dwconv_pads)
            dwconv_tap0 = Slice (dwconv_pad, dwconv_start0, dwconv_end0, dwconv_axes, dwconv_steps)
            dwconv_mac0 = Mul (dwconv_tap0, dwconv_w0)
            dwconv_tap1 = Slice (dwconv_pad, dwconv_start1, dwconv_end1, dwconv_axes, dwconv_steps)
            dwconv_mac1 = Mul (dwconv_tap1, dwconv_w1)
            dwconv_tap2 = Slice (dwconv_pad, dwconv_start2, dwconv_end2, dwconv_axes, dwconv_steps)
            dwconv_mac2 = Mul (dwconv_tap2, dwconv_w2)
            y = Sum (dwconv_mac0, dwconv_mac1, dwconv_mac2, dwconv_bias)
        }""",
    )


def _checked(strategy: str, text: str, ctx: PassContext | None = None) -> Graph:
    """The graph of ``text`` after ``dwconv{strategy=...}``, checked by ``run_checked``
    (verifier, numbers against onnxruntime, a second run changes nothing)."""
    g = parse(text)
    (p,) = parse_pipeline(f"dwconv{{strategy={strategy},budget=0.05}}").items
    result = run_checked(p, g, ctx=ctx)
    assert result.changed or strategy == "auto"
    return g


def test_dense_and_unfold_matmul() -> None:
    g = _checked("dense", CONV_1D)
    assert [n.op_type for n in g] == ["Conv"] and g.first is not None
    assert g.first.attr("group") == 1
    g = _checked("unfold-matmul", CONV_1D)
    assert [n.op_type for n in g] == ["Pad", "Gather", "Reshape", "MatMul", "Reshape", "Add"]


@pytest.mark.parametrize("strategy", FORMS)
def test_in_an_if_branch_reading_outer_values(strategy: str) -> None:
    text = (
        H + "m (float[1,2,5] x, bool c) => (float[1,2,5] y) <float[2,1,3] w = {1,2,3,4,5,6}, "
        "float[2] b = {0.5,-1}> { y = If (c) < "
        "then_branch = g1 () => (float[1,2,5] t) { t = Conv <group = 2, pads = [1, 1]> (x, w, b) },"
        " else_branch = g2 () => (float[1,2,5] e) { e = Identity (x) } > }"
    )
    for flag in (True, False):
        g = parse(text)
        feeds = {"x": np.arange(10, dtype=np.float32).reshape(1, 2, 5), "c": np.array(flag)}
        (p,) = parse_pipeline(f"dwconv{{strategy={strategy}}}").items
        assert run_checked(p, g, feeds=feeds).changed
        (body,) = [n for n in g if n.op_type == "If"][0].subgraphs[:1]
        assert "Conv" not in {n.op_type for n in body} or strategy == "dense"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("y = Conv (x, w1)", None),  # group 1: not depthwise
        ("y = Conv <group = 2> (x, wx)", "left_unsupported"),  # weight is an input
    ],
)
def test_non_cases(body: str, reason: str | None) -> None:
    text = (
        H + "m (float[1,2,5] x, float[2,1,3] wx) => (float[1,2,?] y) "
        "<float[2,2,3] w1 = {1,2,3,4,5,6,7,8,9,10,11,12}> { " + body + " }"
    )
    for strategy in ("auto", *FORMS):
        g = parse(text)
        result = DwConv(strategy=strategy).run(g, PassContext())
        assert not result.changed
        assert result.stats == ({reason: 1} if reason else {})


def test_a_non_static_shape_is_left_alone_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    text = (
        H + "m (float[1,2,L] x) => (float[1,2,L] y) <float[2,1,3] w = {1,2,3,4,5,6}> "
        "{ y = Conv <group = 2, pads = [1, 1]> (x, w) }"
    )
    g = parse(text)
    g.first.name = "depthwise_7"  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING, "neffkit.passes"):
        result = DwConv(strategy="shift-mac").run(g, PassContext())
    assert (result.changed, result.stats) == (False, {"left_dynamic_shape": 1})
    assert "depthwise_7" in caplog.text and "not static" in caplog.text


@pytest.mark.parametrize("strategy", ["auto", *FORMS])
@pytest.mark.parametrize(
    ("x", "y"), [("float[N,2,5] x", "float[N,2,5] y"), ("float[1,2,5] x", "float[1,2,L] y")]
)
def test_a_symbolic_batch_or_output_dim_is_left_alone_and_reported(
    strategy: str, x: str, y: str, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 12: nodes whose shapes are not static are left alone (auto would time batch 1)
    text = CONV_1D.replace("float[1,2,5] x", x).replace("float[1,2,5] y", y)
    g = parse(text)
    g.first.name = "dw_sym"  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING, "neffkit.passes"):
        result = DwConv(strategy=strategy).run(g, PassContext())
    assert (result.changed, result.stats) == (False, {"left_dynamic_shape": 1})
    assert "dw_sym" in caplog.text and "not static" in caplog.text
    assert [n.op_type for n in g] == ["Conv"]


def _conv_1d(length: int, kernel: int) -> str:
    """A depthwise Conv1d of 2 channels, ``length`` long, kernel ``kernel``, no pads."""
    w = ",".join(str(i % 7 - 3) for i in range(2 * kernel))
    out = length - kernel + 1
    return (
        H + f"m (float[1,2,{length}] x) => (float[1,2,{out}] y) <float[2,1,{kernel}] w = {{{w}}}>"
        " { y = Conv <group = 2> (x, w) }"
    )


def test_patch_index_matches_its_definition() -> None:
    from neffkit.passes._dwconv_forms import patch_index

    g = parse(_conv_1d(9, 3).replace("<group = 2>", "<group = 2, strides = [2], pads = [1, 0]>"))
    dw = analyze(g.first, Rewriter(g, PassContext()))  # type: ignore[arg-type]
    assert dw is not None and dw.out == (4,)
    assert patch_index(dw).tolist() == [[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8]]
    text = H + (
        "m (float[1,2,6,5] x) => (float[1,2,2,2] y) <float[2,1,2,2] w = {1,2,3,4,5,6,7,8}> "
        "{ y = Conv <group = 2, strides = [3, 2], dilations = [2, 1]> (x, w) }"
    )
    g = parse(text)
    dw = analyze(g.first, Rewriter(g, PassContext()))  # type: ignore[arg-type]
    assert dw is not None
    # output (i, j), tap (a, b): row (3i + 2a) * 5 + column (2j + b)
    want = [[(3 * i + 2 * a) * 5 + 2 * j + b for a in range(2) for b in range(2)]
            for i in range(2) for j in range(2)]  # fmt: skip
    assert patch_index(dw).tolist() == want


def test_a_large_patch_index_or_kernel_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # 256 outputs x 9 taps x 8 bytes = 18432 bytes of index: over a 10000-byte limit
    text = _conv_1d(264, 9)
    ctx = PassContext(max_constant_bytes=10_000)
    g = parse(text)
    g.first.name = "big_dw"  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING, "neffkit.passes"):
        result = DwConv(strategy="unfold-matmul").run(g, ctx)
    assert (result.changed, result.stats) == (False, {"left_index_too_large": 1})
    assert "big_dw" in caplog.text and "18432 bytes" in caplog.text
    _checked("unfold-matmul", text)  # within the default limit: rewritten, numbers checked
    # shift-mac: 65 taps are too many, 64 are not
    caplog.clear()
    g = parse(_conv_1d(70, 65))
    with caplog.at_level(logging.WARNING, "neffkit.passes"):
        result = DwConv(strategy="shift-mac").run(g, PassContext())
    assert (result.changed, result.stats) == (False, {"left_too_many_taps": 1})
    assert "65 taps" in caplog.text and [n.op_type for n in g] == ["Conv"]
    assert DwConv(strategy="shift-mac").run(parse(_conv_1d(70, 64)), PassContext()).changed
    # auto times only the forms that would be accepted
    calls = _fake_timings(
        monkeypatch, {"original": 3.0, "shift-mac": 1.0, "unfold-matmul": 2.0, "dense": 2.0}
    )
    result = DwConv().run(parse(text), ctx)
    assert calls == [["original", "shift-mac", "dense"]] and result.stats["shift_mac"] == 1
    result = DwConv().run(parse(_conv_1d(70, 65)), PassContext())
    assert calls[-1] == ["original", "unfold-matmul", "dense"]
    ctx = PassContext(max_constant_bytes=1000)  # the weight fits, the index (3120) does not
    result = DwConv(dense_max_channels=1).run(parse(_conv_1d(70, 65)), ctx)
    assert (result.changed, result.stats) == (False, {"left_too_large": 1}) and len(calls) == 2


def test_dense_only_up_to_its_channel_limit() -> None:
    g = parse(CONV_1D)
    result = (
        parse_pipeline("dwconv{strategy=dense,dense-max-channels=1}").items[0].run(g, PassContext())
    )
    assert (result.changed, result.stats) == (False, {"left_too_many_channels": 1})


def test_an_opset_before_13_is_left_alone() -> None:
    g = parse(CONV_1D.replace('"" : 17', '"" : 11'))
    result = DwConv(strategy="shift-mac").run(g, PassContext())
    assert (result.changed, result.stats) == (False, {"left_unsupported": 1})


@pytest.mark.parametrize(
    "options",
    [
        "strategy=fast",
        "min-gain=1.5",
        "min-gain=-0.1",
        "budget=0",
        "budget=-1",
        "budget=inf",
        "dense-max-channels=0",
        "dense-max-channels=-3",
    ],  # fmt: skip
)
def test_bad_options_fail_when_parsed(options: str) -> None:
    key = options.split("=")[0]
    with pytest.raises(PipelineSyntaxError, match=f"(option '{key}'|{key} must|unknown {key})"):
        parse_pipeline(f"dwconv{{{options}}}")
    field, value = key.replace("-", "_"), options.split("=")[1]
    typed: Any = value if key == "strategy" else float(value)
    typed = int(typed) if key == "dense-max-channels" else typed
    with pytest.raises(NeffkitError, match=key):
        DwConv(**{field: typed})


def test_the_smallest_good_options_are_taken() -> None:
    (p,) = parse_pipeline("dwconv{min-gain=0,budget=0.001,dense-max-channels=1}").items
    assert p.spec() == "dwconv{dense-max-channels=1,budget=0.001,min-gain=0.0}"


# -- generated depthwise convs: every strategy, onnxruntime and torch --------------------------


@st.composite
def depthwise(draw: st.DrawFn) -> onnx.ModelProto:
    """A depthwise Conv over every attribute combination: 1-D and 2-D, multiplier 1 to 3,
    strides, dilations, explicit pads or each auto_pad, bias or not, attributes given or not."""
    rank = draw(st.integers(1, 2))
    c, m, n = draw(st.integers(2, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    k = [draw(st.integers(1, 4)) for _ in range(rank)]
    s = [draw(st.integers(1, 3)) for _ in range(rank)]
    d = [draw(st.integers(1, 3)) for _ in range(rank)]
    mode = draw(st.sampled_from(["pads", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "none"]))
    pads = [draw(st.integers(0, 2)) for _ in range(2 * rank)] if mode == "pads" else [0] * 2 * rank
    spatial = []
    for i in range(rank):
        extent = d[i] * (k[i] - 1) + 1 - pads[i] - pads[rank + i]
        low = 1 if mode.startswith("SAME") else max(1, extent)
        spatial.append(draw(st.integers(low, low + 6)))
    attrs: dict[str, Any] = {"group": c}
    if mode == "pads":
        attrs["pads"] = pads
    elif mode != "none":
        attrs["auto_pad"] = mode
    if draw(st.booleans()) or s != [1] * rank:
        attrs["strides"] = s
    if draw(st.booleans()) or d != [1] * rank:
        attrs["dilations"] = d
    if draw(st.booleans()):
        attrs["kernel_shape"] = k
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    inits = [numpy_helper.from_array(rng.standard_normal([c * m, 1, *k]).astype(np.float32), "w")]
    names = ["x", "w"]
    if draw(st.booleans()):
        inits.append(numpy_helper.from_array(rng.standard_normal([c * m]).astype(np.float32), "b"))
        names.append("b")
    node = helper.make_node("Conv", names, ["y"], name="dw", **attrs)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, *spatial])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * (rank + 2))
    graph = helper.make_graph([node], "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depthwise())
def test_every_strategy_matches_onnxruntime_on_generated_convs(model: onnx.ModelProto) -> None:
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    (want,) = _reference(model, x)
    for strategy in FORMS:
        g = as_graph(model)
        result = DwConv(strategy=strategy).run(g, PassContext())
        assert result.changed, (strategy, result.stats)
        assert all(n.op_type != "Conv" or n.attr("group", 1) == 1 for n in g)
        verify(g)
        text = print_body(g)
        assert not DwConv(strategy=strategy).run(g, PassContext()).changed
        assert print_body(g) == text
        for backend in ("onnxruntime", "torch"):
            (got,) = run(g, [x], backend)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=strategy)


def _reference(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    """onnxruntime's output; onnx's reference evaluator where onnxruntime refuses the conv
    (it has no SAME_UPPER / SAME_LOWER with dilations, which the ONNX spec defines)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in model.graph.node[0].attribute}
    if attrs.get("auto_pad", b"").startswith(b"SAME") and max(attrs.get("dilations", [1])) > 1:
        from onnx.reference import ReferenceEvaluator

        return list(ReferenceEvaluator(model).run(None, {"x": x}))
    return run(model, [x], "onnxruntime")


# -- auto: measured choice, the cache -----------------------------------------------------------


def _fake_timings(monkeypatch: pytest.MonkeyPatch, seconds: dict[str, float]) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake(dw: Any, forms: list[str], *args: Any) -> dict[str, float]:
        calls.append(list(forms))
        return {f: seconds[f] for f in forms}

    monkeypatch.setattr(measuring, "measure", fake)
    return calls


@pytest.mark.parametrize(
    ("seconds", "kept"),
    [
        ({"original": 3.0, "shift-mac": 1.0, "unfold-matmul": 2.0, "dense": 2.0}, "shift-mac"),
        ({"original": 3.0, "shift-mac": 4.0, "unfold-matmul": 2.0, "dense": 1.0}, "dense"),
        ({"original": 3.0, "shift-mac": 4.0, "unfold-matmul": 2.0, "dense": 5.0}, "unfold-matmul"),
        ({"original": 1.0, "shift-mac": 2.0, "unfold-matmul": 1.5, "dense": 1.2}, "original"),
        # a form within min-gain (2%) of the original is not worth the rewrite
        ({"original": 1.0, "shift-mac": 0.99, "unfold-matmul": 3.0, "dense": 3.0}, "original"),
    ],
)
def test_auto_keeps_the_fastest_and_never_a_slower_form(
    monkeypatch: pytest.MonkeyPatch, seconds: dict[str, float], kept: str
) -> None:
    _fake_timings(monkeypatch, seconds)
    g = parse(CONV_1D)
    result = DwConv().run(g, PassContext())
    key = kept.replace("-", "_") if kept != "original" else "kept_original"
    assert result.stats[key] == 1 and result.stats["measured"] == 1
    assert result.changed == (kept != "original")
    ops = {
        "original": {"Conv"},
        "dense": {"Conv"},
        "shift-mac": {"Pad", "Slice", "Mul", "Sum"},
        "unfold-matmul": {"Pad", "Gather", "Reshape", "MatMul", "Add"},
    }
    assert {n.op_type for n in g} == ops[kept]


def test_auto_measures_a_shape_once_then_reads_the_cache(
    monkeypatch: pytest.MonkeyPatch, _cache: Any
) -> None:
    calls = _fake_timings(
        monkeypatch, {"original": 3.0, "shift-mac": 1.0, "unfold-matmul": 2.0, "dense": 2.0}
    )
    two = CONV_1D.replace(
        "{ y = Conv <group = 2, pads = [1, 1]> (x, w, b) }",
        "{ a = Conv <group = 2, pads = [1, 1]> (x, w, b)  "
        "y = Conv <group = 2, pads = [1, 1]> (a, w, b) }",
    )
    result = DwConv().run(parse(two), PassContext())
    assert result.stats["shift_mac"] == 2 and result.stats["measured"] == 1
    files = list((_cache / "dwconv").glob("*.json"))
    assert len(files) == 1
    entry = json.loads(files[0].read_text())
    assert entry["key"]["conv"]["kernel"] == [3] and entry["key"]["backend"] == "torch"
    assert entry["seconds"]["shift-mac"] == 1.0
    result = DwConv().run(parse(CONV_1D), PassContext())
    assert result.stats["cache_hits"] == 1 and len(calls) == 1
    # another target, another key
    DwConv().run(parse(CONV_1D), PassContext(target="onnxruntime"))
    assert len(calls) == 2 and len(list((_cache / "dwconv").glob("*.json"))) == 2


def test_a_corrupt_cache_file_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, _cache: Any, caplog: pytest.LogCaptureFixture
) -> None:
    calls = _fake_timings(
        monkeypatch, {"original": 3.0, "shift-mac": 1.0, "unfold-matmul": 2.0, "dense": 2.0}
    )
    DwConv().run(parse(CONV_1D), PassContext())
    (path,) = (_cache / "dwconv").glob("*.json")
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, "neffkit.passes"):
        result = DwConv().run(parse(CONV_1D), PassContext())
    assert "corrupt cache file" in caplog.text and str(path) in caplog.text
    assert result.stats["measured"] == 1 and len(calls) == 2
    assert json.loads(path.read_text())["seconds"]["original"] == 3.0  # written again


def test_an_explicit_strategy_measures_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_timings(monkeypatch, {})
    result = DwConv(strategy="unfold-matmul").run(parse(CONV_1D), PassContext())
    assert result.stats["unfold_matmul"] == 1 and calls == []


def test_a_target_that_cannot_run_here_leaves_the_convs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "neffkit.passes"):
        result = DwConv().run(parse(CONV_1D), PassContext(target="no-such-backend"))
    assert (result.changed, result.stats) == (False, {"left_unmeasured": 1})
    assert "cannot measure" in caplog.text


#: two depthwise convs of different shapes (two cache keys) reading the same input
TWO_CONVS = CONV_1D.replace("float[1,2,5] y", "float[1,2,5] y, float[1,2,7] z").replace(
    "{ y = Conv <group = 2, pads = [1, 1]> (x, w, b) }",
    "{ y = Conv <group = 2, pads = [1, 1]> (x, w, b)  "
    "z = Conv <group = 2, pads = [1, 3]> (x, w, b) }",
)


def test_a_target_that_compiles_in_prepare_is_not_measured(
    monkeypatch: pytest.MonkeyPatch, _cache: Any, caplog: pytest.LogCaptureFixture
) -> None:
    calls = _fake_timings(monkeypatch, {})
    with caplog.at_level(logging.WARNING, "neffkit.passes"):
        result = DwConv().run(parse(TWO_CONVS), PassContext(target="neuron"))
    assert (result.changed, result.stats) == (False, {"left_unmeasured": 2}) and calls == []
    assert caplog.text.count("cannot measure on target 'neuron'") == 1
    assert "compiles" in caplog.text and not _cache.exists()


def test_an_all_failed_measurement_is_never_cached(
    monkeypatch: pytest.MonkeyPatch, _cache: Any, caplog: pytest.LogCaptureFixture
) -> None:
    inf = float("inf")
    calls = _fake_timings(
        monkeypatch, {"original": inf, "shift-mac": inf, "unfold-matmul": inf, "dense": inf}
    )
    with caplog.at_level(logging.WARNING, "neffkit.passes"):
        result = DwConv().run(parse(TWO_CONVS), PassContext())
    assert (result.changed, result.stats) == (False, {"left_unmeasured": 2, "measured": 1})
    assert len(calls) == 1 and caplog.text.count("cannot measure on target 'torch'") == 1
    assert not list(_cache.glob("dwconv/*.json"))
    # an all-failed entry already on disk (an older neffkit's) is measured again
    _fake_timings(monkeypatch, {"original": 3.0, "shift-mac": 1.0, "unfold-matmul": 2.0,
                                "dense": 2.0})  # fmt: skip
    DwConv().run(parse(CONV_1D), PassContext())
    (path,) = _cache.glob("dwconv/*.json")
    entry = json.loads(path.read_text())
    entry["seconds"] = {f: inf for f in entry["seconds"]}
    path.write_text(json.dumps(entry))
    result = DwConv().run(parse(CONV_1D), PassContext())
    assert result.stats.get("measured") == 1 and result.stats["shift_mac"] == 1


@pytest.mark.parametrize("target", ["torch", "onnxruntime"])
def test_auto_really_measures_and_stays_exact(target: str, _cache: Any) -> None:
    _checked("auto", CONV_1D, PassContext(target=target))
    (path,) = (_cache / "dwconv").glob("*.json")
    seconds = json.loads(path.read_text())["seconds"]
    assert set(seconds) == {"original", *FORMS} and all(0 < t < 1 for t in seconds.values())


def test_measuring_drops_slow_forms_early_and_keeps_to_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # seconds per call; dense's first call (setup) is quick, its later ones slow
    delay = {"original": 0.01, "shift-mac": 0.2, "unfold-matmul": 0.011, "dense": 0.1}
    calls: dict[str, int] = {}

    class FakeRunner:
        def __init__(self, graph: Graph, target: str, device: Any = None) -> None:
            self.form = graph.name.removeprefix("dwconv_")

        def __call__(self, feeds: Any) -> None:
            calls[self.form] = calls.get(self.form, 0) + 1
            first = self.form == "dense" and calls["dense"] == 1
            time.sleep(0.012 if first else delay[self.form])

    monkeypatch.setattr(measuring, "Runner", FakeRunner)
    g = parse(CONV_1D)
    dw = analyze(g.first, Rewriter(g, PassContext()))  # type: ignore[arg-type]
    assert dw is not None
    start = time.perf_counter()
    seconds = measuring.measure(dw, list(delay), "torch", None, 17, budget=0.2)
    assert time.perf_counter() - start < 0.2 + 0.5
    assert calls["shift-mac"] == 1  # its first call took 20x the original's: never again
    assert calls["dense"] == 2  # a quick first call, then a timed one over twice the original's
    assert calls["original"] > 3 and calls["unfold-matmul"] == calls["original"]
    assert measuring.choose(seconds, 0.02) == "original"
    assert seconds["shift-mac"] >= 0.2 and seconds["dense"] >= 0.1


def test_choose() -> None:
    assert measuring.choose({"original": 1.0, "dense": float("inf")}, 0.02) == "original"
    assert measuring.choose({"original": float("inf"), "dense": 1.0}, 0.02) == "dense"
    assert measuring.choose({"original": 1.0, "dense": 0.5}, 0.6) == "original"


# -- the Conformer ------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["shift-mac", "unfold-matmul", "auto"])
def test_the_conformer_encoder_stays_exact(strategy: str) -> None:
    from neffkit.examples.conformer import example_input, export_encoder_onnx
    from neffkit.passes import PassManager

    model = export_encoder_onnx(width=64, encoder_layers=1)
    image = example_input(64)
    (want,) = run(model, [image], "onnxruntime")
    g = as_graph(model)
    spec = f"shape-infer,dwconv{{strategy={strategy},budget=0.05}}"
    report = PassManager(spec, ctx=PassContext(target="torch")).run(g)
    stats = report.records[-1].stats
    depthwise = [n for n in g if n.op_type == "Conv" and n.attr("group", 1) > 1]
    if strategy == "auto":
        assert stats.get("measured") == 1
        assert len(depthwise) + sum(stats.get(f.replace("-", "_"), 0) for f in FORMS) == 1
    else:
        assert stats[strategy.replace("-", "_")] == 1 and not depthwise
    for backend in ("onnxruntime", "torch"):
        (got,) = run(g, [image], backend)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
