"""Every module of the TorchScript zoo (neffkit.testing.torchscript_zoo), in each form it is
meant for: the lifted graph on the torch backend gives the module's own outputs, and where no
``aten`` node is left, the graph exported with ``to_onnx`` gives them on onnxruntime too."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neffkit.execution import Runner  # noqa: E402
from neffkit.frontends.torchscript import load_torchscript  # noqa: E402
from neffkit.ir.serde import to_onnx  # noqa: E402
from neffkit.ir.verifier import verify  # noqa: E402
from neffkit.testing.torchscript_zoo import ZOO, convert  # noqa: E402

CASES = [(name, form) for name, e in ZOO.items() for form in e.forms]
#: The modules whose lifted graph must keep an aten node (a fused op with no ONNX form).
KEEPS_ATEN = {"torch_transformer_encoder"}


def _flat(out: Any) -> list[np.ndarray]:
    if isinstance(out, list | tuple):
        return [x for item in out for x in _flat(item)]
    return [out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)]


def _feeds(example: tuple[Any, ...]) -> list[np.ndarray]:
    return [x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in example]


def _same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        g = np.asarray(g)
        assert g.shape == w.shape
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_the_zoo_holds_thirty_modules_in_both_forms() -> None:
    assert len(ZOO) >= 30
    assert sum("trace" in e.forms and "script" in e.forms for e in ZOO.values()) >= 20
    for name in ("conformer_ocr", "bert_encoder", "torch_transformer_encoder", "resnet50",
                 "lstm_decoder", "gru_decoder"):  # fmt: skip
        assert name in ZOO


@pytest.mark.parametrize(("name", "form"), CASES, ids=[f"{n}-{f}" for n, f in CASES])
def test_lifted_module_matches_on_torch_and_onnxruntime(name: str, form: str) -> None:
    module, example = ZOO[name].build("small")
    with torch.no_grad():
        want = _flat(module(*example))
    graph = load_torchscript(convert(module, form, example), example_inputs=example)
    verify(graph)
    aten = sorted({n.op_type for n in graph.all_nodes() if n.domain == "aten"})
    assert bool(aten) == (name in KEEPS_ATEN), aten
    _same(Runner(graph, "torch", check=False)(_feeds(example)), want)
    if not aten:
        _same(Runner(to_onnx(graph), "onnxruntime")(_feeds(example)), want)


def test_resnet50_has_the_bottleneck_topology() -> None:
    module, _ = ZOO["resnet50"].build("small")
    stages = [type(b).__name__ for b in module.blocks]
    assert stages == ["_Bottleneck"] * 16  # 3 + 4 + 6 + 3
    assert sum(isinstance(m, torch.nn.Conv2d) for m in module.modules()) == 53


def test_zoo_weights_are_deterministic() -> None:
    a, ex_a = ZOO["bert_encoder"].build("small")
    b, ex_b = ZOO["bert_encoder"].build("small")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert all(torch.equal(x, y) for x, y in zip(ex_a, ex_b, strict=True))


@pytest.mark.parametrize("name", ["lstm_decoder", "gru_decoder"])
def test_greedy_decoders_lift_their_loop(name: str) -> None:
    module, example = ZOO[name].build("small")
    graph = load_torchscript(convert(module, "script", example), example_inputs=example)
    loop = next(n for n in graph if n.op_type == "Loop")
    body_ops = {n.op_type for n in loop.attr("body")}
    assert {name[: -len("_decoder")].upper(), "Concat", "ArgMax"} <= body_ops
