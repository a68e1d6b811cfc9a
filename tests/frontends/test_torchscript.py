"""The TorchScript frontend on real scripted and traced modules: the lifted graph, exported to
ONNX and run on onnxruntime, gives the module's own outputs; unliftable constructs raise one
FrontendError naming the op and this file's line."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from neffkit.errors import FrontendError  # noqa: E402
from neffkit.execution import Runner  # noqa: E402
from neffkit.frontends.torchscript import load_torchscript  # noqa: E402
from neffkit.ir.serde import to_onnx  # noqa: E402
from neffkit.ir.verifier import verify  # noqa: E402


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.fc = nn.Conv2d(8, 8, 3), nn.Linear(8 * 3 * 3, 5)
        with torch.no_grad():  # non-trivial statistics, so a wrong fold would show
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn(self.c1(x))), 2)
        x = nn.functional.avg_pool2d(torch.relu(self.c2(x)), 2)
        return self.fc(torch.flatten(x, 1))


class EncoderLayer(nn.Module):
    """A transformer encoder layer written with plain ops (no fused fast path)."""

    def __init__(self, d: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.f1, self.f2 = nn.Linear(d, 32), nn.Linear(32, d)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        k = k.view(b, t, self.heads, d // self.heads).permute(0, 2, 3, 1)
        v = v.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
        att = torch.softmax(torch.matmul(q, k) / (d // self.heads) ** 0.5, dim=-1)
        y = torch.matmul(self.drop(att), v).transpose(1, 2).reshape(b, t, d)
        x = self.n1(x + self.out(y))
        return self.n2(x + self.f2(nn.functional.gelu(self.f1(x))))


def _convert(module: nn.Module, how: str, example: tuple[Any, ...]) -> Any:
    module.eval()
    return torch.jit.script(module) if how == "script" else torch.jit.trace(module, example)


def _run_ort(graph: Any, example: tuple[Any, ...], backend: str = "onnxruntime") -> list[Any]:
    verify(graph)  # the IR's invariants hold (SSA, order, use-lists, initializer types)
    return Runner(graph, backend)([t.numpy() for t in example])


def _expected(module: nn.Module, example: tuple[Any, ...]) -> np.ndarray:
    with torch.no_grad():
        return module(*example).numpy()


class ResidualNet(nn.Module):
    """A small ResNet: stem, one residual block with a projection shortcut, global pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.body = nn.Sequential(
            nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
        )  # fmt: skip
        self.short = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(self.body(x) + self.short(x))
        return self.fc(torch.flatten(self.pool(x), 1))


CASES = {
    "resnet": (ResidualNet, (2, 3, 32, 32)),
    "mlp": (MLP, (2, 8)),
    "cnn": (CNN, (2, 3, 16, 16)),
    "encoder": (EncoderLayer, (2, 5, 16)),
}


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
@pytest.mark.parametrize("how", ["script", "trace"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_lifted_graph_matches_module(name: str, how: str, backend: str) -> None:
    torch.manual_seed(0)
    cls, shape = CASES[name]
    module = cls()
    example = (torch.randn(*shape),)
    graph = load_torchscript(_convert(module, how, example), example_inputs=example)
    assert not [n for n in graph.all_nodes() if n.domain == "aten"]
    (got,) = _run_ort(graph, example, backend)
    np.testing.assert_allclose(got, _expected(module, example), rtol=1e-4, atol=1e-5)


class Zoo(nn.Module):
    """One module through many single-op rules: each line lifts to ONNX or the test fails."""

    def __init__(self) -> None:
        super().__init__()
        self.prelu = nn.PReLU(4)
        self.register_buffer("idx", torch.tensor([2, 0]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = nn.functional.hardswish(x) + nn.functional.hardsigmoid(x) + nn.functional.elu(x)
        a = a + nn.functional.softplus(x) + torch.log1p(x.abs()) + self.prelu(x)
        a = a + torch.clamp(x, -0.5, 0.5) + nn.functional.leaky_relu(x, 0.1)
        b = torch.cumsum(a, dim=1).flip([2]) + torch.tril(a) - torch.triu(a, 1)
        vals, idx = torch.topk(b, 2, dim=-1)
        m, am = torch.max(b, dim=1)
        p, q = torch.split(b, [1, 3], dim=1)
        r = torch.cat([q, p], dim=1).index_select(2, self.idx)
        r = r + torch.gather(b, 2, idx) + vals * idx.float() + torch.max(b, a).mean()
        s = nn.functional.pad(r, [1, 2], value=0.5).repeat(1, 1, 2) * torch.numel(b)
        u0, u1, u2, u3 = torch.unbind(b, dim=1)
        t = torch.stack([u3, u1, u2, u0], dim=-1).view_as(b) + m.unsqueeze(1)
        return s, t.sum(dim=[1, 2], keepdim=True) / b.size(0), am.to(torch.int32)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_op_zoo(how: str) -> None:
    torch.manual_seed(0)
    module = Zoo().eval()
    example = (torch.randn(2, 4, 5),)
    graph = load_torchscript(_convert(module, how, example), example_inputs=example)
    assert not [n.op_type for n in graph.all_nodes() if n.domain == "aten"]
    got = _run_ort(graph, example)
    with torch.no_grad():
        want = module(*example)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5)


class Recurrent(nn.Module):
    def __init__(self, cls: type, **options: Any) -> None:
        super().__init__()
        self.rnn = cls(6, 5, **options)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, state = self.rnn(x)
        return [out, *(state if isinstance(state, tuple) else (state,))]


@pytest.mark.parametrize("how", ["script", "trace"])
@pytest.mark.parametrize(
    "options", [{}, {"num_layers": 2, "bidirectional": True, "batch_first": True}, {"bias": False}]
)
@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_lstm_and_gru(cls: type, options: dict[str, Any], how: str) -> None:
    # gates reordered (LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h), biases joined, layers
    # chained, batch_first transposed: outputs and final states match
    torch.manual_seed(0)
    module = Recurrent(cls, **options).eval()
    example = (torch.randn(3, 4, 6),)
    graph = load_torchscript(_convert(module, how, example), example_inputs=example)
    ops = [n.op_type for n in graph]
    assert ops.count(cls.__name__) == options.get("num_layers", 1)
    assert not [n for n in graph.all_nodes() if n.domain == "aten"]
    got = _run_ort(graph, example)
    with torch.no_grad():
        want = module(*example)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-6)


class GreedyLSTM(nn.Module):
    """A scripted greedy decoder: LSTM state carried by the loop, tokens grown by torch.cat."""

    def __init__(self, vocab: int = 11, hidden: int = 8, max_len: int = 6, eos: int = 10) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.cell = nn.LSTM(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)
        self.max_len, self.eos = max_len, eos

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        tokens = torch.zeros(1, 1, dtype=torch.long)
        h, c = h0, torch.zeros_like(h0)
        for _ in range(self.max_len):
            y, (h, c) = self.cell(self.embed(tokens[:, -1:]), (h, c))
            nxt = self.out(y[:, -1]).argmax(dim=-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], dim=1)
            if bool(nxt[0, 0] == self.eos):
                break
        return tokens


def test_greedy_lstm_decoder_loop() -> None:
    torch.manual_seed(0)
    module = GreedyLSTM().eval()
    h0 = torch.randn(1, 1, 8)
    graph = load_torchscript(torch.jit.script(module), example_inputs=(h0,))
    loop = next(n for n in graph if n.op_type == "Loop")
    assert "LSTM" in {n.op_type for n in loop.attr("body")}
    runner = Runner(graph, "onnxruntime")
    lengths = set()
    for seed in range(4):
        h0 = torch.randn(1, 1, 8, generator=torch.Generator().manual_seed(seed)) * 3
        with torch.no_grad():
            want = module(h0).numpy()
        lengths.add(want.shape[1])
        np.testing.assert_array_equal(runner([h0.numpy()])[0], want)
    assert len(lengths) > 1  # some inputs stop early, some run to max_len


def test_cnn_ops_and_parameters() -> None:
    module = CNN()
    example = (torch.randn(1, 3, 16, 16),)
    graph = load_torchscript(torch.jit.script(module), example_inputs=example)
    ops = {n.op_type for n in graph}
    # freeze folds batch_norm into the convolution; pooling and flatten map one to one
    assert {"Conv", "MaxPool", "AveragePool", "Relu", "MatMul", "Reshape"} <= ops
    assert "BatchNormalization" not in ops
    assert [v.name for v in graph.inputs] == ["x"]
    assert graph.inputs[0].type.shape == (1, 3, 16, 16)


def test_loaded_from_a_saved_archive(tmp_path: Any) -> None:
    module = MLP().eval()
    path = tmp_path / "mlp.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    example = (torch.randn(3, 8),)
    graph = load_torchscript(path, example_inputs=example)
    (got,) = _run_ort(graph, example)
    np.testing.assert_allclose(got, _expected(module, example), rtol=1e-5, atol=1e-6)


def test_caller_module_is_left_in_training_mode() -> None:
    module = torch.jit.script(MLP())
    module.train()
    load_torchscript(module, example_inputs=(torch.randn(1, 8),))
    assert module.training


class Scalars(nn.Module):
    """int arithmetic on sizes, a float scalar, a data-dependent if and a counted loop."""

    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        half = x.size(1) // 2
        y = x[:, :half] * 2.5 - x[:, half:]
        if bool(y.sum() > 0):
            y = y + 1
        else:
            y = -y
        for _ in range(n):
            y = torch.cat([y, y[:, -1:]], dim=1)
        return y.masked_fill(y > 3.0, 0.0)


def test_if_and_loop_with_int_input() -> None:
    module = Scalars()
    graph = load_torchscript(torch.jit.script(module), example_inputs=(torch.randn(2, 6), 2))
    assert [v.type.shape for v in graph.inputs] == [(2, 6), ()]
    ops = {n.op_type for n in graph.all_nodes()}
    assert {"If", "Loop", "Where"} <= ops
    for seed in range(3):
        torch.manual_seed(seed)
        x = torch.randn(2, 6) + (seed - 1)
        got = Runner(graph, "onnxruntime")([x.numpy(), np.array(seed + 1, np.int64)])[0]
        np.testing.assert_allclose(got, module(x, seed + 1).numpy(), rtol=1e-6, atol=1e-6)


def test_without_example_inputs_the_graph_types_are_used() -> None:
    module = MLP().eval()
    graph = load_torchscript(torch.jit.script(module))
    (x,) = graph.inputs
    assert x.type.shape is None  # a scripted Tensor: rank unknown, dtype taken as float
    example = (torch.randn(7, 8),)
    (got,) = _run_ort(graph, example)
    np.testing.assert_allclose(got, _expected(module, example), rtol=1e-5, atol=1e-6)


class ListBuiltOnce(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts: list[torch.Tensor] = [x]
        parts.append(x * 2)
        parts.append(x + 1)
        return torch.stack(parts, dim=1)


def test_list_appended_outside_a_loop_lifts() -> None:
    module = ListBuiltOnce()
    example = (torch.randn(2, 3),)
    graph = load_torchscript(torch.jit.script(module), example_inputs=example)
    (got,) = _run_ort(graph, example)
    np.testing.assert_allclose(got, _expected(module, example), rtol=1e-6)


def test_complex_input_is_refused() -> None:
    with pytest.raises(FrontendError, match="'x': dtype torch.complex64"):
        load_torchscript(torch.jit.script(MLP()), example_inputs=(torch.ones(2, 8) * 1j,))


def test_op_without_onnx_rule_stays_aten() -> None:
    class Cum(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumprod(x, dim=1) + 1

    graph = load_torchscript(torch.jit.script(Cum()), example_inputs=(torch.randn(2, 3),))
    (aten,) = [n for n in graph if n.domain == "aten"]
    assert aten.op_type == "cumprod"
    assert aten.attr("schema").startswith("aten::cumprod(")
    assert aten.attr("dim") == 1
    assert graph.opset_imports["aten"] == 1
    assert any(n.domain == "aten" for n in to_onnx(graph).graph.node)


def test_torch_transformer_layer_traced_without_fast_path_lifts_fully() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, activation="gelu").eval()
    x = torch.randn(2, 5, 16)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        traced = torch.jit.trace(layer, (x,))
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    graph = load_torchscript(traced, example_inputs=(x,))
    assert not [n for n in graph.all_nodes() if n.domain == "aten"]
    (got,) = _run_ort(graph, (x,))
    np.testing.assert_allclose(got, _expected(layer, (x,)), rtol=1e-4, atol=1e-5)


def test_torch_transformer_layer_scripted_keeps_the_fused_op() -> None:
    # scripted library code: the inference branches fold (training, grad, nested, masks None,
    # warnings and their messages), leaving the fast path: one fused op with no ONNX form
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, activation="gelu").eval()
    x = torch.randn(2, 5, 16)
    graph = load_torchscript(torch.jit.script(layer), example_inputs=(x,))
    assert [v.name for v in graph.inputs] == ["src"]
    (node,) = graph.nodes
    assert (node.domain, node.op_type) == ("aten", "_transformer_encoder_layer_fwd")
    assert node.attr("embed_dim") == 16 and node.attr("use_gelu") == 1
    assert node.attr("tensor_args")[0] == "src"
    assert len(node.inputs) == len(node.attr("tensor_args"))


@pytest.mark.parametrize("stops_early", [False, True])
def test_conformer_greedy_loop_on_onnxruntime(stops_early: bool) -> None:
    from neffkit.examples.conformer import EOS_ID, build_conformer_ocr

    model = build_conformer_ocr(d_model=32, num_heads=2, encoder_layers=1, decoder_layers=1,
                                max_len=12)  # fmt: skip
    if stops_early:  # EOS wins every step: the loop's break ends it after one step
        with torch.no_grad():
            model.decoder.out.bias[EOS_ID] = 1e3
    x = torch.randn(1, 1, 32, 48, generator=torch.Generator().manual_seed(0))
    graph = load_torchscript(torch.jit.script(model), example_inputs=(x,))
    ops = {n.op_type for n in graph.all_nodes()}
    assert {"Loop", "If", "ArgMax", "Conv", "LayerNormalization"} <= ops
    assert not [n for n in graph.all_nodes() if n.domain == "aten"]
    verify(graph)
    runner = Runner(graph, "onnxruntime")
    for seed in range(2):
        x = torch.randn(1, 1, 32, 48, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            want = model(x).numpy()
        assert want.shape == ((1, 1) if stops_early else (1, 12))
        np.testing.assert_array_equal(runner([x.numpy()])[0], want)
    if not stops_early:  # the torch backend runs the lifted Loop too
        np.testing.assert_array_equal(Runner(graph, "torch")([x.numpy()])[0], want)


# -- unsupported constructs: one FrontendError naming the op and this file's line ---------------


def _line_of(fn: Any, text: str) -> int:
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


@torch.jit.script
class Box:
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x


class UsesClass(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = Box(x + 1)
        return b.x


class UsesDict(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        d = {"a": x + 1}
        return d


class AppendsInLoop(nn.Module):
    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        out: list[torch.Tensor] = []
        for _ in range(n):
            out.append(x)
        return torch.stack(out)


class MakesString(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = str(x.size(0))
        return x + len(s)


class MutatesInput(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        y.add_(1)  # a fresh tensor: made functional, lifts
        x.mul_(3)
        return x + y


@pytest.mark.parametrize(
    ("cls", "op", "marker"),
    [
        (MutatesInput, "aten::mul_", "x.mul_(3)"),
        (UsesClass, "prim::CreateObject", "b = Box(x + 1)"),
        (UsesDict, "prim::DictConstruct", 'd = {"a": x + 1}'),
        (AppendsInLoop, "aten::append", "out.append(x)"),
        (MakesString, "aten::str", "s = str(x.size(0))"),
    ],
)
def test_unsupported_construct_names_op_and_line(cls: type, op: str, marker: str) -> None:
    with pytest.raises(FrontendError) as info:
        load_torchscript(torch.jit.script(cls()))
    message = str(info.value)
    assert message.startswith(op), message
    assert f"{__file__}:{_line_of(cls.forward, marker)}" in message


def test_complex_constant_is_refused() -> None:
    class Complex(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("c", torch.ones(2, dtype=torch.complex64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.view_as_real(self.c + x)

    with pytest.raises(FrontendError, match="ComplexFloat") as info:
        load_torchscript(torch.jit.script(Complex()), example_inputs=(torch.randn(2),))
    assert f"{__file__}:{_line_of(Complex.forward, 'view_as_real')}" in str(info.value)


def test_cast_to_complex_is_refused() -> None:
    class ToComplex(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = x.to(torch.complex64)
            return torch.view_as_real(z)

    with pytest.raises(FrontendError, match="complex64 is not supported") as info:
        load_torchscript(torch.jit.script(ToComplex()), example_inputs=(torch.randn(2),))
    message = str(info.value)
    assert message.startswith("aten::to")
    assert f"{__file__}:{_line_of(ToComplex.forward, 'torch.complex64')}" in message


def test_not_a_script_module() -> None:
    with pytest.raises(FrontendError, match="ScriptModule"):
        load_torchscript(MLP())
