"""The dry run's operator-support report: verdicts, placement, transitions, static shapes and
the predicted compile error on small traced modules whose answers are known from the lists, and
on the compiled units of the small Conformer's three decoder forms."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from neffkit.backends.neuron.support import (
    CPU,
    DEVICE,
    LIMITED,
    UNLISTED,
    analyze_unit,
    render_report,
)
from neffkit.backends.neuron.units import compiled_units
from neffkit.errors import BackendError
from neffkit.examples import example_input
from tests.backends.neuron.conftest import D, run_pipeline


def _trace(
    module: torch.nn.Module, *args: tuple[int, ...] | torch.Tensor
) -> torch.jit.ScriptModule:
    """``module`` traced on random inputs of the given shapes (or on the given tensors)."""
    example = tuple(a if isinstance(a, torch.Tensor) else torch.randn(a) for a in args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's constant warnings
        return torch.jit.trace(module.eval(), example)


class _Embedding(torch.nn.Module):
    """gt, where (device) | embedding (removed on inf1) | sum, sum, add, cat (device)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.where(x > 0, x, y)
        b = torch.nn.functional.embedding(torch.tensor([0, 1]), y)
        return a.sum() + b.sum(), torch.cat([a, x])


class _Island(torch.nn.Module):
    """erf, neg (device on inf1) between two embeddings (CPU on inf1)."""

    def forward(self, ids: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        e = torch.nn.functional.embedding(ids, w)
        return torch.nn.functional.embedding(ids, torch.neg(torch.erf(e)))


class _Linear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.relu(self.fc(x)), torch.erf(x)


def _verdicts(report) -> dict[str, tuple[str, int]]:
    return {v.op: (v.verdict, v.nodes) for v in report.ops}


def test_a_removed_op_splits_the_unit_and_transitions_count_the_crossings() -> None:
    unit = _trace(_Embedding(), (2, 3), (2, 3))
    r = analyze_unit("emb", unit, "inf1")
    v = _verdicts(r)
    assert v["aten::embedding"] == (CPU, 1)
    assert v["aten::where"] == (DEVICE, 1)  # limited: the 3-argument form is the supported one
    assert v["aten::sum"] == (DEVICE, 2)
    assert r.count(CPU) == 1 and r.count(DEVICE) == r.aten_nodes - 1
    # program order: gt where to detach | embedding | sum sum add cat
    assert r.segments == (("device", 4), ("cpu", 1), ("device", 4))
    assert r.device_segments == 2
    # detach -> embedding, embedding -> sum, and where's result read by cat in the other
    # device segment (through the host)
    assert r.transitions_per_call == 3
    assert r.plumbing["prim::ListConstruct"] == 1
    assert r.error is None and r.static


def test_without_fallback_a_cpu_op_is_a_predicted_compile_error_naming_it() -> None:
    r = analyze_unit("emb", _trace(_Embedding(), (2, 3), (2, 3)), "inf1", fallback=False)
    assert r.error is not None
    assert "torch_neuron.trace(fallback=False)" in r.error
    assert "aten::embedding x1" in r.error and "performance" in r.error
    # the same unit on inf2, where embedding is listed: no CPU op, no error
    assert analyze_unit("emb", _trace(_Embedding(), (2, 3), (2, 3)), "inf2").error is None


def test_a_device_run_shorter_than_the_minimum_segment_goes_to_the_cpu() -> None:
    unit = _trace(_Island(), torch.tensor([0, 1, 2, 3]), (5, 3))
    # embedding | erf neg | embedding: the device run (erf, neg) has 2 nodes
    assert analyze_unit("i", unit, "inf1").segments == (("cpu", 1), ("device", 2), ("cpu", 1))
    r = analyze_unit("i", unit, "inf1", minimum_segment_size=3)
    assert r.segments == (("cpu", 4),)
    assert r.transitions_per_call == 0 and r.device_segments == 0


def test_a_host_loop_step_pays_its_transitions_every_trip() -> None:
    unit = _trace(_Embedding(), (2, 3), (2, 3))
    r = analyze_unit("step", unit, "inf1", trips=75)
    assert r.transitions == 75 * 3
    assert r.to_json()["transitions"] == 225


def test_aliases_are_assumed_and_unlisted_ops_are_unverified_on_inf2() -> None:
    unit = _trace(_Linear(), (2, 3))
    inf1 = _verdicts(analyze_unit("l", unit, "inf1"))
    assert inf1 == {
        "aten::linear": (DEVICE, 1),
        "aten::relu": (DEVICE, 1),
        "aten::erf": (DEVICE, 1),
    }
    r = analyze_unit("l", unit, "inf2")
    linear = next(v for v in r.ops if v.op == "aten::linear")
    assert (linear.verdict, linear.assumed) == (DEVICE, True)
    assert "aten::t + aten::addmm" in linear.note
    assert _verdicts(r)["aten::erf"] == (UNLISTED, 1)
    # counted on the device: one segment; were erf on the CPU, nothing would cross (it reads
    # the unit's input and is an output)
    assert r.segments == (("device", 3),) and r.worst_transitions_per_call == 0
    trn2 = analyze_unit("l", unit, "trn2")
    assert {v.verdict for v in trn2.ops} == {UNLISTED}
    assert any("not read" in n for n in trn2.notes)


def test_limited_ops_are_checked_where_the_condition_can_be_read() -> None:
    class Indices(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.where(x > 0)[0]

    class Norms(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.ops.aten.norm(x, 2), torch.ops.aten.norm(x, 3), torch.norm(x, p=2)

    v = _verdicts(analyze_unit("w", _trace(Indices(), (4,)), "inf1"))
    assert v["aten::where"] == (CPU, 1)  # the 1-argument form is not supported
    norms = analyze_unit("n", _trace(Norms(), (4,)), "inf1")
    got = sorted((o.verdict, o.note) for o in norms.ops if o.op == "aten::norm")
    assert [g[0] for g in got] == [CPU, DEVICE]
    assert "p=3" in got[0][1] and "p=2" in got[1][1]
    # torch 2 traces torch.norm as linalg_vector_norm: the alias, with the condition checked
    vector = next(o for o in norms.ops if o.op == "aten::linalg_vector_norm")
    assert (vector.verdict, vector.assumed) == (DEVICE, True)
    assert "as aten::norm" in vector.note and "p=2" in vector.note

    class Lstm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.LSTM(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0]

    lstm = analyze_unit("r", _trace(Lstm(), (2, 1, 3)), "inf1")
    assert _verdicts(lstm)["aten::lstm"] == (LIMITED, 1)


def test_a_scripted_unit_is_not_static() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation
        scripted = torch.jit.script(_Linear())
    r = analyze_unit("s", scripted, "trn2")
    assert not r.static and r.dynamic
    assert any("recompiles" in n for n in r.notes)
    assert analyze_unit("t", _trace(_Linear(), (2, 3)), "trn2").static


def test_bad_arguments_are_refused() -> None:
    unit = _trace(_Linear(), (2, 3))
    with pytest.raises(BackendError, match="unknown Neuron target 'inf3'"):
        analyze_unit("u", unit, "inf3")
    with pytest.raises(BackendError, match="not a TorchScript module"):
        analyze_unit("u", _Linear(), "inf1")  # type: ignore[arg-type]
    with pytest.raises(BackendError, match="trips"):
        analyze_unit("u", unit, "inf1", trips=0)
    with pytest.raises(BackendError, match="another target"):
        render_report([analyze_unit("u", unit, "inf1")], target="inf2")


def test_the_report_names_its_list_and_round_trips_as_json() -> None:
    units = [
        analyze_unit("encoder", _trace(_Linear(), (2, 3)), "inf1"),
        analyze_unit("step", _trace(_Embedding(), (2, 3), (2, 3)), "inf1", trips=4),
    ]
    md, data = render_report(units, target="inf1")
    assert "81ce03ae" in md and "Neuron SDK 2.13.0" in md
    rows = [line for line in md.splitlines() if line.startswith("| step |")]
    assert rows and rows[0].split("|")[10:12] == [" 3 ", " 12 "]
    assert "| step | `aten::embedding` | 1 | cpu |" in md
    again = json.loads(json.dumps(data))
    assert again["oplist"]["repo_commit"].startswith("81ce03ae")
    assert [u["name"] for u in again["units"]] == ["encoder", "step"]
    assert again["units"][1]["cpu_nodes"] == 1 and again["units"][1]["transitions"] == 12


# -- the embedded Conformer's decoder forms (the small one of conftest.py) -----------------------


@pytest.fixture(scope="module")
def conformer_units(conformer, partitioned, padded) -> dict[str, list]:
    """The compiled units of the full unroll, the partitioned unroll and the padded host loop."""
    unrolled = run_pipeline(conformer, f"unroll,{D}")
    image = {"image": example_input(32)}
    return {
        form: compiled_units(g, image).units
        for form, g in (("unroll", unrolled), ("partitions", partitioned), ("padded", padded))
    }


def test_every_conformer_unit_runs_on_inf1_as_one_static_segment(conformer_units) -> None:
    names = {form: [u.name for u in units] for form, units in conformer_units.items()}
    assert names == {
        "unroll": ["model"],
        "partitions": ["partition_0_4", "partition_5_9", "partition_10_19"],
        "padded": ["encoder", "step"],
    }
    for units in conformer_units.values():
        for u in units:
            r = analyze_unit(u.name, u.traced, "inf1", trips=u.trips, fallback=False)
            # the Gather fix-up's where is the 3-argument form, argmax is listed since
            # 2.0.318.0: nothing of the lowering falls back on inf1
            assert r.count(CPU) == 0 and r.count(UNLISTED) == 0, r.ops
            assert r.segments == ((DEVICE, r.aten_nodes),)
            assert r.transitions == 0 and r.error is None and r.static


def test_the_padded_step_on_inf1_and_inf2(conformer_units) -> None:
    encoder, step = conformer_units["padded"]
    assert step.trips == 20
    r = analyze_unit("step", step.traced, "inf1", trips=step.trips)
    v = {o.op: o for o in r.ops}
    assert v["aten::argmax"].verdict == DEVICE
    assert v["aten::where"].verdict == DEVICE and "condition met" in v["aten::where"].note
    assert v["aten::index_select"].verdict == DEVICE
    assert r.plumbing["prim::Constant"] > 0
    inf2 = analyze_unit("step", step.traced, "inf2", trips=step.trips)
    v2 = {o.op: o for o in inf2.ops}
    assert v2["aten::argmax"].verdict == UNLISTED and v2["aten::index_select"].verdict == DEVICE
    assert v2["aten::where"].assumed
    # counted on the device, the step is one segment; the bound counts every step's crossings
    assert inf2.transitions == 0 and inf2.worst_transitions_per_call
    encoder_report = analyze_unit("encoder", encoder.traced, "inf2")
    md, data = render_report([encoder_report, inf2], target="inf2")
    assert "| step | 20 |" in md and "`aten::argmax`" in md
    step_json = data["units"][1]
    assert step_json["unlisted_nodes"] == inf2.count(UNLISTED) > 0
    assert step_json["worst_transitions"] == 20 * inf2.worst_transitions_per_call
