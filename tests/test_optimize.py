"""neffkit.optimize and `neffkit optimize`: pipeline, verification, reports, safety, plugins."""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import neffkit
from neffkit.backends import onnxruntime as ort_backend
from neffkit.cli import main
from neffkit.errors import PassError
from neffkit.execution.compare import compare_all, explain
from neffkit.execution.inputs import random_inputs
from neffkit.ir.core import Graph
from neffkit.ir.text import parse, print_body
from neffkit.passes import Pass, PassContext, PassResult, registry
from neffkit.passes.rewrite.registry import BUILTIN_RULES
from neffkit.testing.text import model_text

MODEL = model_text("""
m (float[4, 8] x) => (float[4, 8] y)
  <float[8, 8] w1 = {64 * 0.5}, float[8, 8] w2 = {64 * 0.5}, float[8] b = {8 * 0.0}> {
    i = Identity(x)
    a = MatMul(i, w1)
    c = MatMul(i, w2)
    s = Add(a, c)
    t1 = Transpose<perm = [1, 0]>(s)
    t2 = Transpose<perm = [1, 0]>(t1)
    one = Constant<value = float {1.0}>()
    m1 = Mul(t2, one)
    shape = Shape(m1)
    r = Reshape(m1, shape)
    z = Add(r, b)
    dead = Exp(x)
    y = Relu(z)
}
""")


def _model_text() -> str:
    text = MODEL
    text = text.replace("{64 * 0.5}", "{" + ", ".join(["0.5"] * 64) + "}")
    return text.replace("{8 * 0.0}", "{" + ", ".join(["0.0"] * 8) + "}")


@pytest.fixture
def model_path(tmp_path) -> str:
    path = str(tmp_path / "m.onnx")
    neffkit.save(parse(_model_text()), path)
    return path


def test_optimize_reduces_and_verifies(model_path) -> None:
    graph = neffkit.load(model_path)
    before = print_body(graph)
    optimized, report = neffkit.optimize(graph, target="torch")
    assert print_body(graph) == before  # the caller's graph is not modified
    assert report.ok and report.verification is not None and report.verification.ok
    ops = [n.op_type for n in optimized]
    assert ops == ["MatMul", "Add", "Relu"], ops  # dedup + cse merge the MatMuls, the rest goes
    assert report.passes.nodes_after < report.passes.nodes_before
    assert report.passes.bytes_after < report.passes.bytes_before
    feeds = random_inputs(optimized)
    (same,) = compare_all(ort_backend.run(model_path, feeds), ort_backend.run(optimized, feeds))
    assert same.ok, explain(same)
    again, second = neffkit.optimize(optimized, verify=False)
    assert not second.passes.changed


def test_unknown_target_is_a_clear_error(model_path) -> None:
    with pytest.raises(neffkit.NeffkitError, match="unknown target 'tpu'"):
        neffkit.optimize(model_path, target="tpu")


def test_cli_optimize_writes_output_table_and_report(model_path, tmp_path, capsys) -> None:
    out = str(tmp_path / "m.opt.onnx")
    report_path = str(tmp_path / "report.json")
    rc = main(["optimize", model_path, "-o", out, "--report", report_path, "--time-passes"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "fold" in text and "total" in text and f"wrote {out}" in text
    onnx.checker.check_model(onnx.load(out), full_check=True)
    report = json.loads(open(report_path).read())
    assert report["ok"] is True
    assert report["passes"]["nodes_after"] == 3
    assert set(report["passes"]["per_pass"]) >= {"dedup", "fold", "simplify", "cse", "dce"}


def test_cli_optimize_refuses_to_overwrite_its_input(model_path, capsys) -> None:
    before = open(model_path, "rb").read()
    rc = main(["optimize", model_path, "-o", model_path])
    err = capsys.readouterr().err
    assert rc == 2
    assert "refusing to overwrite" in err and model_path in err
    assert open(model_path, "rb").read() == before


def test_cli_bad_pipeline_exits_2_and_points_at_it(model_path, tmp_path, capsys) -> None:
    rc = main(["optimize", model_path, "-o", str(tmp_path / "o.onnx"), "--passes", "cse,,dce"])
    err = capsys.readouterr().err
    assert rc == 2 and "bad pipeline" in err
    assert not os.path.exists(tmp_path / "o.onnx")


def test_cli_progress_with_verbose(model_path, tmp_path, capsys) -> None:
    rc = main(["optimize", model_path, "-o", str(tmp_path / "o.onnx"), "-v", "--no-verify"])
    assert rc == 0
    assert "neffkit: pass 1: shape-infer" in capsys.readouterr().err


def test_cli_passes_lists_every_pass_with_options(capsys) -> None:
    assert main(["passes"]) == 0
    text = capsys.readouterr().out
    for name in ("dce", "cse", "fold", "simplify", "dedup", "shape-infer"):
        assert f"\n{name} " in "\n" + text
    assert "max-bytes=" in text and "default pipelines" in text


def test_cli_passes_lists_the_simplify_rules_with_their_patterns(capsys) -> None:
    assert main(["passes"]) == 0
    text = capsys.readouterr().out
    for r in BUILTIN_RULES.rules():
        assert f" {r.name:<30} {r.pattern}\n" in text
    assert main(["passes", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["passes"]}
    rules = rows["simplify"]["rules"]
    assert [r["name"] for r in rules] == [r.name for r in BUILTIN_RULES.rules()]
    assert {"name": "drop_identity", "ops": ["Identity"], "pattern": "Identity(x) -> x"} in rules
    assert "rules" not in rows["dce"]


PLUGIN = '''
from __future__ import annotations
from dataclasses import dataclass
from typing import ClassVar
from neffkit.passes import Pass, PassResult


@dataclass(frozen=True)
class DropAbsOfRelu(Pass):
    """Abs(Relu(x)) -> Relu(x)."""

    name: ClassVar[str] = "drop-abs-of-relu"
    description: ClassVar[str] = "test plugin: Abs after Relu is a no-op"

    def run(self, graph, ctx):
        n = 0
        for node in graph:
            src = node.inputs[0] if node.inputs else None
            if node.op_type == "Abs" and src is not None and src.producer is not None \\
                    and src.producer.op_type == "Relu" and not node.outputs[0].is_graph_output:
                node.outputs[0].replace_all_uses_with(src)
                graph.remove(node)
                n += 1
        return PassResult(n > 0, {"removed": n} if n else {})
'''


def test_third_party_pass_from_an_entry_point_runs_from_the_cli(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    (site / "nk_plugin_demo").mkdir(parents=True)
    (site / "nk_plugin_demo" / "__init__.py").write_text(PLUGIN)
    info = site / "nk_plugin_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nk-plugin-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[neffkit.passes]\ndrop-abs-of-relu = nk_plugin_demo:DropAbsOfRelu\n"
    )
    monkeypatch.syspath_prepend(str(site))
    registry.reset_entry_points()
    model = tmp_path / "p.onnx"
    neffkit.save(
        parse(
            textwrap.dedent(
                model_text("""
                m (float[3] x) => (float[3] y) { r = Relu(x) a = Abs(r) y = Neg(a) }
                """)
            )
        ),
        model,
    )
    try:
        assert main(["passes"]) == 0
        assert "drop-abs-of-relu" in capsys.readouterr().out
        out = tmp_path / "p.opt.onnx"
        rc = main(["optimize", str(model), "-o", str(out), "--passes", "drop-abs-of-relu,dce"])
        text = capsys.readouterr().out
        assert rc == 0, text
        assert [n.op_type for n in onnx.load(str(out)).graph.node] == ["Relu", "Neg"]
    finally:
        registry.unregister("drop-abs-of-relu")
        registry.reset_entry_points()


@dataclass(frozen=True)
class _SumToIdentity(Pass):
    """Test pass: ReduceSum(x) -> x, right only when x has one element."""

    name: ClassVar[str] = "test-sum-to-identity"
    description: ClassVar[str] = "test: wrong unless every symbolic dim is 1"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        changed = False
        for node in list(graph):
            if node.op_type == "ReduceSum":
                node.outputs[0].replace_all_uses_with(node.inputs[0])
                graph.remove(node)
                changed = True
        return PassResult(changed, {})


def test_verify_each_runs_at_the_sizes_of_the_final_check(registered_pass) -> None:
    registered_pass(_SumToIdentity)
    # a pass that is only wrong when a symbolic dim is above 1 is named by --verify-each (its
    # inputs are the final verification's first set, dims 3), not only found at the end
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    g = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(PassError, match="test-sum-to-identity"):
        neffkit.optimize(model, passes="test-sum-to-identity", verify_each=True)
    with pytest.raises(PassError, match="test-sum-to-identity"):
        neffkit.optimize(model, passes="test-sum-to-identity", verify_each=True, dims={"n": 2})


@dataclass(frozen=True)
class _NudgeWeights(Pass):
    """Test pass: every float initializer times 1.001 (off by 1e-3 relative)."""

    name: ClassVar[str] = "test-nudge-weights"
    description: ClassVar[str] = "test: changes the numbers by 1e-3 relative"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        from neffkit.ir.tensor import Tensor

        for v in graph.initializers.values():
            if v.const is not None and v.const.numpy().dtype == np.float32:
                v.const = Tensor(v.const.numpy() * np.float32(1.001), v.const.name)
                graph.version += 1
        return PassResult(True, {})


def test_verify_each_holds_the_passes_to_the_given_tolerances(model_path, registered_pass) -> None:
    registered_pass(_NudgeWeights)
    # the per-dtype default (float32: rtol 1e-4) finds the nudge; the user's rtol allows it
    with pytest.raises(PassError, match=r"test-nudge-weights.*output 0 \('y'\) changed: .*rtol=0"):
        neffkit.optimize(model_path, passes="test-nudge-weights", verify_each=True, verify=False)
    _, report = neffkit.optimize(
        model_path, passes="test-nudge-weights", verify_each=True, rtol=1e-2, atol=1e-3
    )
    assert report.ok and report.passes.changed


def test_optimize_exports_once_and_writes_the_bytes_it_verified(
    model_path, tmp_path, monkeypatch
) -> None:
    from neffkit.backends import onnx as onnx_backend
    from neffkit.optimize import save_optimized

    exported: list[object] = []
    loaded: list[object] = []
    real_to_onnx, real_session = onnx_backend.to_onnx, ort_backend.session

    def to_onnx(graph, **kw):  # noqa: ANN001, ANN003, ANN202
        exported.append(graph)
        return real_to_onnx(graph, **kw)

    def session(model, **kw):  # noqa: ANN001, ANN003, ANN202
        loaded.append(model)
        return real_session(model, **kw)

    monkeypatch.setattr(onnx_backend, "to_onnx", to_onnx)
    monkeypatch.setattr(ort_backend, "session", session)
    graph, report = neffkit.optimize(model_path, target="onnxruntime")
    assert report.ok and report.exported is not None
    out = tmp_path / "out.onnx"
    save_optimized(graph, report, out)
    assert sum(g is graph for g in exported) == 1  # not for the check, verification or save
    on_disk = out.read_bytes()
    # onnxruntime loaded these very bytes: the load check, then the verification
    assert [m for m in loaded if isinstance(m, bytes)] == [on_disk, on_disk]
    assert report.exported.sha256() == hashlib.sha256(on_disk).hexdigest()


def test_save_optimized_exports_when_nothing_was_verified_or_the_form_differs(
    tmp_path,
) -> None:
    from neffkit.optimize import save_optimized

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [512])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [512])
    w = onnx.numpy_helper.from_array(np.arange(512, dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    graph, report = neffkit.optimize(model, verify=False)
    assert report.exported is None
    save_optimized(graph, report, tmp_path / "plain.onnx")
    graph, report = neffkit.optimize(model, external_data=True)
    assert report.ok and report.exported is not None and report.exported.external_data
    save_optimized(graph, report, tmp_path / "ext.onnx")
    save_optimized(graph, report, tmp_path / "inline.onnx", external_data=False)
    assert os.path.exists(tmp_path / "ext.onnx.data")
    assert not os.path.exists(tmp_path / "inline.onnx.data")
    for name in ("plain.onnx", "ext.onnx", "inline.onnx"):
        (got,) = neffkit.run(tmp_path / name, [np.ones(512, np.float32)], backend="onnxruntime")
        np.testing.assert_array_equal(got, np.arange(512) + 1)
