"""Bad input ends in a clear error or a correct result, never a traceback or a foreign
exception: the CLI exits 2 with one ``neffkit: error:`` line and writes nothing; the library
raises a ``NeffkitError`` subclass and prints nothing."""

from __future__ import annotations

import io
import os

import numpy as np
import onnx
import pytest
import torch

import neffkit
from neffkit.cli import main
from neffkit.errors import BackendError, FrontendError, NeffkitError
from neffkit.passes.pipeline import PipelineSyntaxError, parse_pipeline
from tests.helpers import error_line
from tests.hostile_models import ALL, CASES, UNPICKLED, X2, Bad, relu_model

OUTPUTS = {"run": "out.npz", "convert": "out.pt", "optimize": "out.onnx"}


def _argv(command: str, path: str, out: str) -> list[str]:
    if command == "inspect":
        return ["inspect", path]
    if command == "verify":
        return ["verify", path, path]
    return [command, path, "-o", out]


def _cli_cases() -> list:
    out = []
    for case in CASES:
        for command in ALL:
            out.append(pytest.param(case, command, id=f"{case.name}-{command}"))
    return out


@pytest.mark.parametrize(("case", "command"), _cli_cases())
def test_cli_refuses_bad_model(
    case: Bad, command: str, tmp_path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = case.write(str(tmp_path))
    out = str(tmp_path / OUTPUTS.get(command, "unused"))
    rc = main(_argv(command, path, out))
    if command not in case.fails:
        assert rc == 0, capfd.readouterr().err
        return
    assert rc == 2
    line = error_line(capfd)
    if command == "run":
        assert case.says in line
    assert not os.path.exists(out)
    assert [p for p in os.listdir(tmp_path) if p.startswith(".neffkit-")] == []
    assert not os.path.exists(tmp_path / UNPICKLED)  # a pickle payload never ran


TORCH_FILES = [c for c in CASES if c.name.startswith(("legacy torch", "torch.save", "TorchScript",
                                                      "truncated TorchScript"))]  # fmt: skip


@pytest.mark.parametrize("command", ["tune-partitions", "reduce"])
@pytest.mark.parametrize("case", TORCH_FILES, ids=[c.name for c in TORCH_FILES])
def test_the_other_commands_refuse_hostile_torch_files(
    case: Bad, command: str, tmp_path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = case.write(str(tmp_path))
    out = tmp_path / "out.txt"
    if command == "tune-partitions":
        (tmp_path / "lengths.txt").write_text("3\n5\n")
        argv = [command, path, "--lengths", str(tmp_path / "lengths.txt"), "-o", str(out)]
    else:
        argv = [command, path, "--check", "false {model}", "-o", str(out)]
    assert main(argv) == 2
    assert case.says in error_line(capfd)
    assert not out.exists() and not (tmp_path / UNPICKLED).exists()


def _library_cases(command: str) -> list:
    return [pytest.param(c, id=c.name) for c in CASES if command in c.fails and c.library]


@pytest.mark.parametrize("case", _library_cases("inspect"))
def test_load_raises_frontend_error(case: Bad, tmp_path, capfd) -> None:
    with pytest.raises(FrontendError):
        neffkit.load(case.write(str(tmp_path)))
    assert capfd.readouterr().err == ""


def test_random_inputs_too_large_to_make(tmp_path, capfd) -> None:
    from neffkit.api import random_inputs
    from tests.hostile_models import _huge_input

    path = str(tmp_path / "m.onnx")
    onnx.save(_huge_input(), path)
    with pytest.raises(NeffkitError, match=r"input 'x': cannot make random values of shape"):
        random_inputs(neffkit.load(path))
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("case", _library_cases("run"))
def test_run_raises_neffkit_error(case: Bad, tmp_path, capfd) -> None:
    path = case.write(str(tmp_path))
    with pytest.raises(NeffkitError) as info:
        neffkit.run(path, case.feeds)
    assert case.says in str(info.value)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("case", _library_cases("optimize"))
def test_optimize_raises_neffkit_error(case: Bad, tmp_path, capfd) -> None:
    with pytest.raises(NeffkitError):
        neffkit.optimize(case.write(str(tmp_path)))
    assert capfd.readouterr().err == ""


# -- going on anyway --------------------------------------------------------------------------


def test_if_branch_types_are_refused_at_run_time_too(tmp_path) -> None:
    """Without the check the torch backend still refuses an output of the undeclared type."""
    from tests.hostile_models import _if_model

    path = str(tmp_path / "if.onnx")
    onnx.save(_if_model(onnx.TensorProto.FLOAT, onnx.TensorProto.INT64), path)
    with pytest.raises(BackendError, match="declared float but the model computes int64"):
        neffkit.run(path, {"c": np.array(False)}, check=False)
    (y,) = neffkit.run(path, {"c": np.array(True)}, check=False)
    assert y.dtype == np.float32


def test_torch_runtime_failure_prints_nothing(tmp_path, capfd) -> None:
    """torch.fx's annotated traceback of the generated code is not printed."""
    from tests.hostile_models import _reshape_runtime

    path = str(tmp_path / "m.onnx")
    onnx.save(_reshape_runtime(), path)
    runner = neffkit.api.Runner(path)
    for _ in range(2):
        with pytest.raises(BackendError, match="input of size 2"):
            runner(X2)
    assert capfd.readouterr().err == ""


# -- the command line -------------------------------------------------------------------------


def _good(tmp_path) -> str:
    path = str(tmp_path / "good.onnx")
    onnx.save(relu_model(), path)
    return path


DEEP = "(" * 2000 + "dce" + ")" * 2000

BAD_PIPELINES = {
    "nested 2000 deep": (DEEP, "nested more than 32 deep"),
    "negative max-bytes": ("fold{max-bytes=-1}", "non-negative integer"),
    "nan max-growth": ("fold{max-growth=nan}", "non-negative number"),
    "negative rewrites": ("simplify{max-rewrites-per-node=-3}", "non-negative integer"),
    "text for an int": ("fold{max-bytes=lots}", "takes an integer"),
    "int for a bool": ("dedup{copies=3}", "true or false"),
    "unknown option": ("dce{bogus=1}", "has no option 'bogus'"),
    "unknown pass": ("nosuchpass", "unknown pass 'nosuchpass'"),
    "unclosed group": ("(dce", "expected ')'"),
    "empty": ("", "empty pipeline"),
    "zero max-iter": ("(dce){max-iter=0}", "positive integer"),
    "unknown rule": ("simplify{disable=no-such-rule}", "no-such-rule"),
}


@pytest.mark.parametrize("key", list(BAD_PIPELINES))
def test_cli_refuses_bad_pipeline(key: str, tmp_path, capfd) -> None:
    text, says = BAD_PIPELINES[key]
    out = tmp_path / "o.onnx"
    assert main(["optimize", _good(tmp_path), "-o", str(out), "--passes", text]) == 2
    line = error_line(capfd)
    assert says in line
    assert len(line) < 400 or key == "unknown rule"  # that one lists the rules
    assert not out.exists()


def test_library_refuses_bad_pipeline_text() -> None:
    with pytest.raises(PipelineSyntaxError, match="nested"):
        parse_pipeline(DEEP)
    from neffkit.passes.fold_constants import FoldConstants

    with pytest.raises(NeffkitError, match="non-negative"):
        FoldConstants(max_bytes=-1)
    with pytest.raises(NeffkitError, match="takes an integer"):
        FoldConstants(max_bytes="1")


BAD_RUN_ARGS = {
    "device tpu": (["--device", "tpu"], "tpu"),
    "device nonsense": (["--device", "not a device"], "unknown torch device"),
    "missing inputs file": (["--inputs", "{tmp}/none.npz"], "no such inputs file"),
    "inputs not npz": (["--inputs", "{model}"], "not an .npz"),
}
if not torch.cuda.is_available():
    BAD_RUN_ARGS["device cuda"] = (["--device", "cuda"], "not available")


@pytest.mark.parametrize("key", list(BAD_RUN_ARGS))
def test_cli_run_refuses_bad_arguments(key: str, tmp_path, capfd) -> None:
    model = _good(tmp_path)
    args, says = BAD_RUN_ARGS[key]
    args = [a.format(tmp=tmp_path, model=model) for a in args]
    out = tmp_path / "o.npz"
    assert main(["run", model, "-o", str(out), *args]) == 2
    assert says in error_line(capfd)
    assert not out.exists()


def test_cli_run_refuses_inputs_of_the_wrong_dtype(tmp_path, capfd) -> None:
    model = _good(tmp_path)
    np.savez(tmp_path / "in.npz", x=np.zeros(2, np.int64))
    assert main(["run", model, "--inputs", str(tmp_path / "in.npz")]) == 2
    assert "expects float[2]" in error_line(capfd)


# -- library misuse ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, 123, 1.5, io.BytesIO(b"x"), onnx.GraphProto(), [], {"a": 1}],
    ids=["None", "int", "float", "file object", "GraphProto", "list", "dict"],
)
def test_load_refuses_wrong_python_types(value, capfd) -> None:
    with pytest.raises(FrontendError, match="expected a model path"):
        neffkit.load(value)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        (None, "got NoneType"),
        (5, "got int"),
        ("x", "inputs must be a list"),
        ([[1.0, 2.0], [3.0]], "takes 1 inputs"),
        ([[[1.0, 2.0], [3.0]]], "input 'x' is not an array"),
        ({"x": "abc"}, "expects float[2]"),
        ({"x": None}, "expects float[2]"),
        ({"y": X2["x"]}, "missing x"),
        ([np.zeros((2, 2), np.float32)], "expects shape"),
    ],
    ids=["None", "int", "str", "two", "ragged", "strings", "dict None", "names", "shape"],
)
def test_run_refuses_bad_inputs(inputs, says: str, tmp_path, capfd) -> None:
    model = _good(tmp_path)
    with pytest.raises(BackendError) as info:
        neffkit.run(model, inputs)
    assert says in str(info.value)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"device": "tpu"}, "tpu"),
        ({"device": 3.5}, "device must be a string"),
        ({"backend": "tpu"}, "unknown backend"),
        ({"backend": None}, "unknown backend"),
        ({"backend": ["torch"]}, "unknown backend"),
        ({"backend": "onnxruntime", "device": "cuda"}, "CPU only"),
    ]
    + ([] if torch.cuda.is_available() else [({"device": "cuda"}, "not available")]),
)
def test_run_refuses_bad_devices_and_backends(kwargs, says: str, tmp_path, capfd) -> None:
    with pytest.raises(NeffkitError) as info:
        neffkit.run(_good(tmp_path), X2, **kwargs)
    assert says in str(info.value)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"passes": 123}, "passes must be pipeline text"),
        ({"passes": ["dce"]}, "passes must be pipeline text"),
        ({"target": 5}, "target must be one of"),
        ({"target": "gpu"}, "unknown target"),
        ({"max_constant_bytes": -1}, "max_constant_bytes"),
        ({"passes": "fold{max-bytes=-1}"}, "non-negative"),
        ({"passes": DEEP}, "nested"),
        ({"seed": "a"}, "seed must be an integer"),
        ({"inputs": 5}, "inputs must be a list"),
        ({"atol": "x"}, "atol must be a number"),
        ({"rtol": float("nan")}, "rtol must be a non-negative finite number"),
        ({"print_ir_after": 5}, "print_ir_after must be a list"),
    ],
    ids=[
        "int", "list", "target int", "target gpu", "max bytes", "option", "deep",
        "seed", "inputs", "atol", "rtol", "print_ir_after",
    ],
)  # fmt: skip
def test_optimize_refuses_bad_arguments(kwargs, says: str, tmp_path, capfd) -> None:
    graph = neffkit.load(_good(tmp_path))
    with pytest.raises(NeffkitError) as info:
        neffkit.optimize(graph, **kwargs)
    assert says in str(info.value)
    assert capfd.readouterr().err == ""


def test_save_refuses_a_non_graph_and_a_directory(tmp_path, capfd) -> None:
    with pytest.raises(BackendError, match="takes a neffkit Graph"):
        neffkit.save(None, str(tmp_path / "o.onnx"))
    with pytest.raises(BackendError, match="takes a file path"):
        neffkit.save(neffkit.load(_good(tmp_path)), 42)
    with pytest.raises(BackendError, match="is a directory"):
        neffkit.save(neffkit.load(_good(tmp_path)), str(tmp_path))
    assert not (tmp_path / "o.onnx").exists()
    assert capfd.readouterr().err == ""


# -- loader fuzzing (the short version of bench/fuzz_loaders.py) ------------------------------


def test_fuzzed_models_end_in_a_result_or_a_neffkit_error() -> None:
    """200 mutated models through load, inspect and run: no foreign exception, no hang."""
    from bench import fuzz_loaders

    report = fuzz_loaders.campaign(200, seed=11, limit=10.0)
    assert report["bad"] == []
    for target, counts in report["counts"].items():
        assert counts["foreign"] == 0 and counts["hang"] == 0, target
        assert counts["ok"] + counts["error"] + report["unwritable"] == 200, target
    # the mutations do reach both outcomes
    assert report["counts"]["run --no-check"]["ok"] > 0
    assert report["counts"]["load"]["error"] > 0


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"inputs": 3}, "inputs must be a list"),
        ({"atol": -1.0}, "atol must be a non-negative"),
        ({"rtol": "x"}, "rtol must be a number"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"backend": "tpu"}, "unknown backend"),
    ],
)
def test_verify_refuses_bad_arguments(kwargs, says: str, tmp_path, capfd) -> None:
    graph = neffkit.load(_good(tmp_path))
    with pytest.raises(NeffkitError) as info:
        neffkit.verify(graph, graph, **kwargs)
    assert says in str(info.value)
    assert capfd.readouterr().err == ""


def test_cli_verify_refuses_a_negative_tolerance(tmp_path, capfd) -> None:
    model = _good(tmp_path)
    assert main(["verify", model, model, "--atol", "-1"]) == 2
    assert "atol must be a non-negative" in error_line(capfd)


def test_to_onnx_refuses_a_non_graph() -> None:
    with pytest.raises(BackendError, match="takes a neffkit Graph"):
        neffkit.to_onnx(None)


def test_convert_refuses_a_model_that_fails_while_traced(tmp_path, capfd) -> None:
    """An Add with one input cannot be scripted, and tracing runs it and fails: exit 2."""
    from tests.hostile_models import model, vi

    onnx_model = model([onnx.helper.make_node("Add", ["x"], ["y"])], [vi("x")], [vi("y")])
    path = str(tmp_path / "m.onnx")
    onnx.save(onnx_model, path)
    out = tmp_path / "m.pt"
    assert main(["convert", path, "-o", str(out), "--no-check"]) == 2
    line = error_line(capfd)
    assert "could not be scripted" in line and "nor traced" in line
    assert not out.exists()


def test_random_inputs_survive_an_attribute_of_the_wrong_type(tmp_path) -> None:
    """Gather's axis given as text: random indices are still made (the check refuses the
    model later, or with --no-check the backend does)."""
    from tests.hostile_models import model, vi

    data = onnx.helper.make_tensor("d", onnx.TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    node = onnx.helper.make_node("Gather", ["d", "i"], ["y"], axis="zero")
    m = model([node], [vi("i", (2,), onnx.TensorProto.INT64)], [vi("y")], [data])
    path = str(tmp_path / "m.onnx")
    onnx.save(m, path)
    from neffkit.api import random_inputs

    feeds = random_inputs(neffkit.load(path))
    assert feeds["i"].dtype == np.int64 and feeds["i"].shape == (2,)
    with pytest.raises(FrontendError, match="Mismatched attribute type"):
        neffkit.run(path, feeds)
