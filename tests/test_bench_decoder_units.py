"""The units the GPU decoder bench times (bench/decoder_units.py), on the CPU: a padded growing
loop cut into encoder, step and epilogue gives onnxruntime's outputs through the host loop, the
replayed step and captured partitions, with early exit at the first, a boundary, a middle and
the last step; the static prefix of a padded and of an unrolled loop likewise. No GPU needed:
``Replay`` runs its copy-in path and calls the unit eagerly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import decoder_units as du
from neffkit.errors import BackendError
from neffkit.execution import Runner
from neffkit.ir.clone import clone_graph
from neffkit.ir.core import Graph
from neffkit.ir.text import parse
from neffkit.optimize import default_pipeline, optimize
from tests.passes.test_pad_loop import BODIES, EXIT, _decoder, _feeds

CPU = torch.device("cpu")
# thr -> steps run (5 at most): the exit after the first step, at a boundary, mid-partition, never
EXITS = [(-100.0, 1), (-1.0, 2), (0.0, 3), (100.0, 5)]


def _model() -> Graph:
    body = BODIES["attention"] + EXIT
    text = _decoder(body, cond="c0").replace(
        "    y = Loop", "    c0 = Constant <value = bool {1}> ()\n    y = Loop"
    )
    return parse(text)


def _padded(passes: str = "pad-loop,split") -> Graph:
    # then the default pipeline, as the bench does: it makes the unrolled shapes static
    graph, _ = optimize(_model(), f"{passes},{default_pipeline('torch')}", verify=False)
    return graph


def _want(feeds: dict[str, np.ndarray]) -> np.ndarray:
    return Runner(clone_graph(_model()), "onnxruntime")(feeds)[0]


def _args(feeds: dict[str, np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(feeds[k]) for k in ("x", "w", "thr")]


def _check(got: object, want: np.ndarray) -> None:
    out = got[0] if isinstance(got, list | tuple) else got
    assert isinstance(out, torch.Tensor)
    assert out.shape == want.shape
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("thr", "steps"), EXITS)
def test_host_loop_and_replayed_step_give_the_loops_outputs(thr: float, steps: int) -> None:
    feeds = _feeds(thr=thr)
    want = _want(feeds)
    assert want.shape == (1, 1 + steps, 4)
    units = du.cut_at_loop(_padded(), CPU, max_steps=5)
    assert units.trip == 5
    enc = list(units.encoder(*_args(feeds)))
    n_in = 2 + units.n_carried
    eager = du.flat_step(units.step, n_in)
    state: dict[str, list[torch.Tensor]] = {}

    def step(args: list[torch.Tensor | None]) -> list[torch.Tensor]:
        if args[n_in] is not None:
            state["caps"] = list(args[n_in:])
        return eager(*args[:n_in], *state["caps"])

    with torch.no_grad():
        out, ran = du.run_host_loop(units, enc, step)
        _check(out, want)
        assert ran == steps
        cond, carried, caps = units.start(enc)
        replay = du.Replay(eager, [units.iteration(0), cond, *carried, *caps])
        out, ran = du.run_host_loop(units, enc, replay)
        _check(out, want)
        assert ran == steps


@pytest.mark.parametrize(("thr", "steps"), EXITS)
def test_partitions_stop_at_the_first_boundary_past_the_exit(thr: float, steps: int) -> None:
    # partitions of 2, 2 and 1 steps: once cond is false the later steps inside a partition
    # leave the carried values as they were
    feeds = _feeds(thr=thr)
    units = du.cut_at_loop(_padded(), CPU, max_steps=5)
    enc = list(units.encoder(*_args(feeds)))
    cond, carried, caps = units.start(enc)
    example = [units.iteration(0), cond, *carried, *caps]
    parts = [
        (start, du.Replay(du.partition_fn(units.step, size, units.n_carried), example))
        for start, size in [(0, 2), (2, 2), (4, 1)]
    ]
    with torch.no_grad():
        out, ran = du.run_partitions(units, enc, parts)
    _check(out, _want(feeds))
    assert ran == {1: 1, 2: 1, 3: 2, 5: 3}[steps]


@pytest.mark.parametrize("passes", ["pad-loop,split", "pad-loop,split,unroll"])
def test_the_static_prefix_and_the_host_slice_give_the_loops_outputs(passes: str) -> None:
    feeds = _feeds(thr=0.0)
    pre = du.cut_static_prefix(_padded(passes), CPU)
    assert "Slice" in pre.cut
    with torch.no_grad():
        replay = du.Replay(lambda *xs: list(pre.prefix(*xs)), _args(feeds))
        out = pre.epilogue(*replay(_args(feeds)))
    _check(out, _want(feeds))


def test_host_reads_names_a_unit_that_reads_a_value_and_passes_a_static_one() -> None:
    units = du.cut_at_loop(_padded(), CPU, max_steps=5)
    feeds = _feeds()
    cond, carried, caps = units.start(list(units.encoder(*_args(feeds))))
    n_in = 2 + units.n_carried
    example = [units.iteration(0), cond, *carried, *caps]
    assert du.host_reads(units.step, lambda m: du.flat_step(m, n_in), example) == ""

    class Reads(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[: int(x.sum())]

    why = du.host_reads(Reads(), lambda m: m, [torch.ones(4)])
    assert why != ""


def test_weight_bytes_counts_each_constant_once() -> None:
    m = torch.nn.Linear(4, 3)
    m.register_buffer("same", m.weight.data)  # one storage under two names counts once
    assert du.weight_bytes(m) == (12 + 3) * 4


def test_a_model_without_one_loop_is_refused() -> None:
    graph = parse(
        '<ir_version: 8, opset_import: ["" : 17]>\nm (float[2] x) => (float[2] y) {\n'
        "    y = Neg (x)\n}"
    )
    with pytest.raises(BackendError, match="one top-level Loop"):
        du.cut_at_loop(graph, CPU, max_steps=5)
