"""The Neuron dry-run bench's own parts (bench/neuron_dry_run.py): the count of host-code ops
outside the compiled units, the summary rows, and the docs table written between its markers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bench import neuron_dry_run as nd
from neffkit.backends.neuron.support import analyze_unit
from neffkit.backends.neuron.units import compiled_units
from neffkit.ir.text import parse
from neffkit.passes.base import PassContext
from neffkit.passes.split_encoder_decoder import SplitEncoderDecoder
from tests.backends.neuron.conftest import LOOP, PLAIN


def _plans():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = compiled_units(parse(PLAIN), {"x": np.ones((2, 3), np.float32)})
        g = parse(LOOP)
        SplitEncoderDecoder().run(g, PassContext())
        feeds = {"x": np.ones(3, np.float32), "limit": np.full(3, 10.0, np.float32)}
        return whole, compiled_units(g, feeds)


def test_host_ops_count_the_torch_calls_outside_the_units() -> None:
    whole, host_loop = _plans()
    assert whole.kind == "whole" and nd.host_ops(whole) == 0  # everything is in the unit
    # the host loop: the epilogue's Neg runs in host code (the tuple reads are not counted)
    assert host_loop.names == ["encoder", "step"] and nd.host_ops(host_loop) == 1


def test_summary_rows_and_the_docs_table_between_its_markers(tmp_path) -> None:
    _, plan = _plans()
    reports = [analyze_unit(u.name, u.traced, "inf2", trips=u.trips) for u in plan.units]
    rows = nd.summary_rows("host loop", "inf2", reports)
    assert [r.split(" | ")[2] for r in rows] == ["encoder", "step"]
    assert rows[1].split(" | ")[3] == "4"  # the step's trips: the loop's bound
    page = tmp_path / "page.md"
    page.write_text(f"intro\n{nd.BEGIN}\nold\n{nd.END}\nafter\n", encoding="utf-8")
    nd.update_docs("| new |", str(page))
    assert page.read_text() == f"intro\n{nd.BEGIN}\n| new |\n{nd.END}\nafter\n"
    page.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="expected one"):
        nd.update_docs("| new |", str(page))
