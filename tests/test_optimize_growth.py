"""``optimize`` reports a large growth of the constants and names the option that prevents it.

The onnx package's ``light_bvlc_alexnet`` (IR v3, 4 KB) builds its weights at run time with
``ConstantOfShape`` from shape inputs that have initializers; the default pipeline folds them
into 89 MiB of constants.
"""

from __future__ import annotations

import os
import re

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import neffkit
from neffkit.cli import main
from neffkit.testing.onnx_cases import data_dir

ALEXNET = os.path.join(data_dir(), "light", "light_bvlc_alexnet.onnx")


def test_light_alexnet_growth_is_in_the_report() -> None:
    _, report = neffkit.optimize(ALEXNET, verify=False)
    growth = report.growth
    assert growth is not None and growth.warn
    assert growth.bytes_before == 288
    assert growth.bytes_after == report.passes.bytes_after > 80 * 1024 * 1024
    assert growth.overridable_inputs == 17
    assert "fold{max-growth=1.0}" in growth.nogrow_pipeline
    figures = report.to_dict()["constant_growth"]
    assert figures["bytes_after"] == growth.bytes_after and figures["warn"] is True
    assert report.notes == [growth.message()]
    assert "warning: constants grew from 288 B to " in report.table()


def test_cli_warns_and_each_suggested_option_keeps_the_file_small(tmp_path, capsys) -> None:
    out = str(tmp_path / "big.onnx")
    assert main(["optimize", ALEXNET, "-o", out, "--no-verify"]) == 0
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "constants grew" in x]
    assert line.startswith("neffkit: warning: constants grew from 288 B to 88.5 MiB")
    assert os.path.getsize(out) > 80 * 1024 * 1024
    os.remove(out)

    pipeline = re.search(r"--passes '([^']+)'", line).group(1)
    assert "--keep-overridable-inputs" in line
    small = os.path.getsize(ALEXNET) * 2
    for extra in (["--passes", pipeline], ["--keep-overridable-inputs"]):
        path = str(tmp_path / "small.onnx")
        assert main(["optimize", ALEXNET, "-o", path, "--target", "onnxruntime", *extra]) == 0
        assert "constants grew" not in capsys.readouterr().err
        assert os.path.getsize(path) < small, extra
        os.remove(path)


def test_small_growth_is_not_reported() -> None:
    # 8 bytes of shape become a 40 KB constant: 5000x, but far under 1 MiB
    shape = numpy_helper.from_array(np.array([100, 100], np.int64), "s")
    model = helper.make_model(
        helper.make_graph(
            [
                helper.make_node(
                    "ConstantOfShape",
                    ["s"],
                    ["c"],
                    value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]),
                ),
                helper.make_node("Add", ["x", "c"], ["y"]),
            ],
            "m",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [100, 100])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [100, 100])],
            [shape],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    _, report = neffkit.optimize(model, target="onnxruntime")
    assert report.ok
    assert report.growth.bytes_after == 40_000
    assert not report.growth.warn
    assert report.notes == []
    assert report.to_dict()["constant_growth"]["message"] is None
