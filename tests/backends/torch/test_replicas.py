"""Replicas of a torch module: the shared layouts hold one storage per tensor (the same
``data_ptr`` in every replica), copies hold their own; every replica computes what the module
computes; serving threads get their share of the cores."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from neffkit.backends.torch import compile as lower
from neffkit.backends.torch.replicas import (
    LAYOUTS,
    TorchReplicas,
    module_tensors,
    replicate,
    storage_pointers,
    threads_per_replica,
    weight_bytes,
)
from neffkit.errors import BackendError
from neffkit.ir.text import parse

_W = ", ".join(f"{(i % 7 - 3) / 8}" for i in range(64))
_B = ", ".join(f"{i / 16}" for i in range(8))
# A Loop whose body reads an outer weight: the lowered module has a child GraphModule.
TEXT = f"""
<ir_version: 8, opset_import: ["" : 18]>
g (float[2, 8] x) => (float[2, 8] y) <float[8, 8] w = {{{_W}}}, float[8] b = {{{_B}}}> {{
    n = Constant <value = int64 {{3}}> ()
    t = Constant <value = bool {{1}}> ()
    y = Loop (n, t, x) <body = step (int64 i, bool c, float[2, 8] h) => (bool co, float[2, 8] ho) {{
        co = Identity (c)
        m = MatMul (h, w)
        ho = Add (m, b)
    }}>
}}
"""


def _graph_module() -> torch.nn.Module:
    return lower(parse(TEXT))


def _script_module() -> torch.jit.ScriptModule:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    return torch.jit.script(m.eval())


def _ptrs(m: torch.nn.Module) -> list[int]:
    return [t.data_ptr() for t in module_tensors(m)]


@pytest.mark.parametrize("make", [_graph_module, _script_module], ids=["fx", "script"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_shared_layouts_alias_every_tensor_and_copies_do_not(make, layout: str) -> None:  # noqa: ANN001
    module = make()
    replicas = replicate(module, 3, layout)
    assert len(replicas) == 3 and replicas[0] is module
    assert len(module_tensors(module)) >= 2
    for r in replicas[1:]:
        assert (r is module) == (layout == "one-module")
        if layout == "copies":
            assert not storage_pointers(r) & storage_pointers(module)
        else:
            assert _ptrs(r) == _ptrs(module)
    x = torch.randn(2, 8)
    with torch.inference_mode():
        want = module(x)
        for r in replicas:
            got = r(x)
            got, ref = (got[0], want[0]) if isinstance(got, tuple) else (got, want)
            torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_weight_bytes_counts_each_storage_once() -> None:
    module = _script_module()
    want = sum(t.numel() * 4 for t in module.parameters())
    assert weight_bytes(module) == want
    shared = torch.nn.ModuleList(replicate(module, 4, "aliased"))
    assert weight_bytes(shared) == want
    fx = _graph_module()
    assert weight_bytes(fx) >= (8 * 8 + 8) * 4
    assert weight_bytes(torch.nn.ModuleList(replicate(fx, 2, "copies"))) == 2 * weight_bytes(fx)


def test_an_aliased_fx_copy_still_fails_with_one_backend_error(capfd) -> None:  # noqa: ANN001
    graph = parse(TEXT)
    (copy,) = replicate(lower(graph), 2, "aliased")[1:]
    reps = TorchReplicas(copy, 1, graph=graph)
    # a tensor skips the input checks: the module itself fails
    with pytest.raises(BackendError, match="torch backend failed while running"):
        reps.call(0, {"x": torch.ones(2, 3)})
    assert "FX-traced" not in capfd.readouterr().err  # no fx code dump on the way


def test_bad_layouts_and_counts_are_refused() -> None:
    with pytest.raises(BackendError, match="unknown replica layout 'mirrored'"):
        replicate(_script_module(), 2, "mirrored")
    with pytest.raises(BackendError, match="at least 1"):
        replicate(_script_module(), 0, "copies")
    with pytest.raises(BackendError, match="by name"):
        TorchReplicas(_script_module(), 1).call(0, {"x": np.ones((1, 8), np.float32)})


def test_threads_share_out_the_cores() -> None:
    assert threads_per_replica(1, cores=8) == 8
    assert threads_per_replica(3, cores=8) == 2
    assert threads_per_replica(4, cores=2) == 1  # more replicas than cores: one each


def test_a_serving_thread_gets_its_share_and_the_caller_keeps_its_own() -> None:
    before = torch.get_num_threads()
    reps = TorchReplicas(_script_module(), 2, threads=1)
    seen: list[int] = []

    def serve() -> None:
        reps.init_thread(0)
        seen.append(torch.get_num_threads())
        seen.append(len(reps.call(0, [np.ones((1, 8), np.float32)])))

    t = threading.Thread(target=serve)
    t.start()
    t.join()
    assert seen == [1, 1]
    assert torch.get_num_threads() == before  # the count belongs to the serving thread
    reps.close()
    assert torch.get_num_threads() == before
