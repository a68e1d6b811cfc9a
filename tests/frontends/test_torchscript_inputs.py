"""Typing a TorchScript module's inputs (frontends/torchscript_inputs.py): ``--input-shape``
text, and example inputs from stated specs or the module's own types, with one error naming
every input that has neither."""

from __future__ import annotations

import pytest

from neffkit.errors import FrontendError
from neffkit.frontends.torchscript_inputs import InputSpec, example_inputs, parse_input_shapes

torch = pytest.importorskip("torch")


def test_parse_input_shapes() -> None:
    specs = parse_input_shapes(["x=1x3x224x224", "ids=2x16:int64", "n=scalar:int32"])
    assert [(k, v.shape, v.dtype) for k, v in specs.items()] == [
        ("x", (1, 3, 224, 224), None),
        ("ids", (2, 16), "int64"),
        ("n", (), "int32"),
    ]
    for bad, says in [("x", "NAME=DIMS"), ("x=2xa", "NAME=DIMS"), ("x=2:complex64", "complex64"),
                      ("x=2:nope", "'nope'"), ("x=2:float8_e4m3fn", "float8_e4m3fn"),
                      ("x=2:qint8", "qint8")]:  # fmt: skip
        with pytest.raises(FrontendError, match=says):
            parse_input_shapes([bad])
    with pytest.raises(FrontendError, match="'x' is given twice"):
        parse_input_shapes(["x=2", "x=3"])


class Mixed(torch.nn.Module):
    def forward(
        self, x: torch.Tensor, n: int, scale: float, flag: bool, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return x * n * scale if flag else x


class TwoTensors(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def test_examples_from_specs_and_placeholders_for_numbers() -> None:
    scripted = torch.jit.script(Mixed())
    x, n, scale, flag, mask = example_inputs(scripted, {"x": InputSpec((2, 3), "int64")})
    assert x.dtype == torch.int64 and tuple(x.shape) == (2, 3)
    assert (n, scale, flag, mask) == (0, 0.0, False, None)
    x, *_ = example_inputs(scripted, {"x": InputSpec(())})
    assert x.dtype == torch.float32 and x.dim() == 0


def test_a_trace_in_memory_records_its_types() -> None:
    traced = torch.jit.trace(TwoTensors(), (torch.ones(2, 3), torch.ones(1, 3)))
    a, b = example_inputs(traced, None)
    assert (tuple(a.shape), tuple(b.shape)) == ((2, 3), (1, 3))


def test_one_error_names_every_untyped_input() -> None:
    with pytest.raises(FrontendError) as info:
        example_inputs(torch.jit.script(TwoTensors()), None, "m.pt")
    message = str(info.value)
    assert message.startswith("m.pt: inputs 'a', 'b' of the TorchScript module have no recorded")
    assert "--input-shape NAME=DIMS[:DTYPE], e.g. --input-shape a=1x3x224x224:float32" in message


def test_stated_names_must_be_tensor_inputs() -> None:
    scripted = torch.jit.script(Mixed())
    with pytest.raises(FrontendError, match="names 'y', but the module's inputs are 'x', 'n'"):
        example_inputs(scripted, {"y": InputSpec((2,))})
    with pytest.raises(FrontendError, match="input 'n' is a int, not a tensor"):
        example_inputs(scripted, {"x": InputSpec((2,)), "n": InputSpec((2,))})
    # an inputs file's arrays (stated=False) need not all be inputs
    example_inputs(scripted, {"x": InputSpec((2,)), "y": InputSpec((2,), stated=False)})


def test_an_absurd_stated_shape_is_refused_before_any_allocation() -> None:
    scripted = torch.jit.script(TwoTensors())
    huge = {"a": InputSpec((100000000, 100000000)), "b": InputSpec((2,))}
    with pytest.raises(FrontendError, match="'a' of shape 100000000x100000000 has 1"):
        example_inputs(scripted, huge, "m.pt")
