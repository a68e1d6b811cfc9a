"""``ReplicaRunner``: N replicas answer what one replica answers, in request order under
concurrency, over one copy of the weights when shared; failures name the replica."""

from __future__ import annotations

import threading
import time

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import neffkit.api
from neffkit.errors import BackendError, FrontendError, NeffkitError
from neffkit.execution import ReplicaError, ReplicaRunner, Runner
from neffkit.execution.replicas import ReplicaRunner as Direct


def _mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((32, 4)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [w1, w2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


MODEL = _mlp()
REQUESTS = [[np.random.default_rng(k).standard_normal((k % 3 + 1, 16)).astype(np.float32)]
            for k in range(12)]  # fmt: skip


def _ptrs(m: torch.nn.Module) -> list[int]:
    return [b.data_ptr() for b in m.buffers()]


def test_the_api_exports_the_runner() -> None:
    assert neffkit.api.ReplicaRunner is ReplicaRunner is Direct


@pytest.mark.parametrize(
    ("shared", "layout"), [(True, "one-module"), (True, "aliased"), (False, "one-module")]
)
def test_replicas_give_one_replicas_outputs_in_request_order(shared: bool, layout: str) -> None:
    want = [Runner(MODEL, "torch")(r)[0] for r in REQUESTS]
    with ReplicaRunner(MODEL, 3, shared_weights=shared, layout=layout, threads=1) as runner:
        got = runner.map(REQUESTS)
        mods = runner.modules
    assert len(got) == len(want)
    for (g,), w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert len(mods) == 3
    same_object = layout == "one-module" and shared
    assert all((m is mods[0]) == same_object for m in mods[1:])
    for m in mods[1:]:
        assert (_ptrs(m) == _ptrs(mods[0])) == shared
        if not shared:
            assert not set(_ptrs(m)) & set(_ptrs(mods[0]))


class _Sleepy(torch.nn.Module):
    """Sleeps ``x[0]`` seconds (releasing the GIL) and says which thread ran it."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.threads: set[str] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.add(threading.current_thread().name)
        time.sleep(float(x[0]))
        return x * self.weight


def test_results_keep_request_order_when_later_requests_finish_first() -> None:
    module = _Sleepy()
    delays = [0.08, 0.0, 0.05, 0.0, 0.03, 0.0, 0.0, 0.01]
    with ReplicaRunner(module, 4) as runner:
        t = time.perf_counter()
        got = runner.map([np.array([d, k], np.float32)] for k, d in enumerate(delays))
        wall = time.perf_counter() - t
    assert [float(g[0][1]) for g in got] == list(range(len(delays)))
    assert len(module.threads) > 1, "requests ran on more than one replica"
    assert wall < sum(delays), "the replicas ran concurrently"


def test_a_failure_names_its_replica_and_keeps_the_cause() -> None:
    module = torch.jit.script(torch.nn.Linear(4, 2))
    with ReplicaRunner(module, 2) as runner:
        ok = runner.submit([np.ones((1, 4), np.float32)])
        with pytest.raises(ReplicaError, match=r"^replica [01]: RuntimeError: mat1 and mat2") as e:
            runner([np.ones((1, 3), np.float32)])
        assert e.value.replica in (0, 1) and isinstance(e.value.__cause__, RuntimeError)
        assert isinstance(e.value, BackendError)
        assert ok.result()[0].shape == (1, 2)  # the other request was not affected
        # inputs that do not fit a graph are refused in the caller, before any replica
    with ReplicaRunner(MODEL, 2) as runner, pytest.raises(NeffkitError, match="'x'"):
        runner.submit([np.ones((2, 15), np.float32)])


def test_a_closed_runner_refuses_requests() -> None:
    runner = ReplicaRunner(torch.nn.Linear(2, 2), 1)
    runner.close()
    runner.close()  # twice is fine
    with pytest.raises(NeffkitError, match="closed"):
        runner([np.ones((1, 2), np.float32)])


def test_a_torchscript_file_goes_through_the_safe_loader(tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    module = torch.jit.script(torch.nn.Linear(4, 3).eval())
    path = tmp_path / "m.pt"
    torch.jit.save(module, str(path))
    x = np.ones((2, 4), np.float32)
    with ReplicaRunner(path, 2, layout="aliased") as runner:
        (y,) = runner([x])
        a, b = runner.modules
        assert a is not b and a.weight.data_ptr() == b.weight.data_ptr()
    np.testing.assert_allclose(y, module(torch.from_numpy(x)).detach().numpy(), rtol=1e-6)
    torch.save(module.state_dict(), str(tmp_path / "w.pt"))
    with pytest.raises(FrontendError, match="w.pt: a torch.save checkpoint"):
        ReplicaRunner(tmp_path / "w.pt", 2)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(NeffkitError, match="positive integer"):
        ReplicaRunner(MODEL, 0)
    with pytest.raises(NeffkitError, match="at most 256"):
        ReplicaRunner(MODEL, 100000)
    with pytest.raises(NeffkitError, match="not 'onnxruntime'"):
        ReplicaRunner(MODEL, 2, backend="onnxruntime")
    with pytest.raises(NeffkitError, match="unknown layout 'mirrored'"):
        ReplicaRunner(MODEL, 2, layout="mirrored")
    with pytest.raises(NeffkitError, match="need a target"):
        ReplicaRunner("m.pt", 2, backend="neuron")
    with pytest.raises(NeffkitError, match="in order"):
        ReplicaRunner(torch.nn.Linear(2, 2), 1)({"x": np.ones((1, 2), np.float32)})


def test_a_refused_thread_start_stops_the_threads_started(monkeypatch) -> None:  # noqa: ANN001
    import threading

    started = []
    real_start = threading.Thread.start

    def start(self) -> None:  # noqa: ANN001
        if len(started) == 2:
            raise RuntimeError("can't start new thread")
        started.append(self)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(NeffkitError, match="cannot start 4 replica threads"):
        ReplicaRunner(MODEL, 4)
    monkeypatch.undo()
    for t in started:
        t.join(timeout=5)
        assert not t.is_alive()
