"""``neffkit tune-partitions`` (:mod:`neffkit.cli.tune`) on the embedded Conformer."""

from __future__ import annotations

import pytest

from neffkit.cli import main
from neffkit.examples.conformer import export_conformer_onnx
from tests.helpers import error_line

#: skewed like the issue's requests: most short, a tail to the Conformer's 75 steps
SKEWED = [n for n in range(1, 76) for _ in range(max(1, round(100 * 0.85**n)))]


@pytest.fixture(scope="module")
def conformer(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("conformer") / "conformer.onnx"
    export_conformer_onnx(path)
    return str(path)


@pytest.fixture
def lengths(tmp_path) -> str:
    path = tmp_path / "lengths.txt"
    path.write_text("\n".join(map(str, SKEWED)) + "\n")
    return str(path)


def test_measures_the_conformer_and_writes_the_pipeline(conformer, lengths, tmp_path, capsys):
    out = tmp_path / "pipeline.txt"
    argv = ["tune-partitions", conformer, "--lengths", lengths, "--backend", "onnxruntime"]
    argv += ["--positions", "3", "--repeats", "2", "-o", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "max length 75" in captured.out
    assert "3 of 75 positions measured, the rest interpolated linearly" in captured.out
    for row in ("tuned", "host loop (a call a step)", "full unroll (one call)"):
        assert row in captured.out
    assert "mean vs full unroll (one call):" in captured.out
    pipeline = out.read_text().strip()
    assert pipeline in captured.out
    assert pipeline.startswith(("partition-unroll{boundaries=", "split,", "unroll{max-trip=75}"))
    # progress goes to stderr: the loop found, the overhead and each measured step
    assert "no static trip count" in captured.err
    assert "call overhead on onnxruntime" in captured.err
    assert "step 75/75:" in captured.err


def test_simulated_accelerator_moves_the_boundaries(conformer, lengths, capsys):
    """Dear calls: few partitions, the first one long. Cheap calls: many, near the host loop."""
    base = ["tune-partitions", conformer, "--lengths", lengths, "--max-len", "75"]
    bounds = {}
    for overhead in ("0.001ms", "2ms", "1s"):
        simulate = f"overhead={overhead},per-position=0.01ms"
        assert main([*base, "--simulate", simulate]) == 0
        out = capsys.readouterr().out
        assert "simulated: overhead" in out
        line = next(x for x in out.splitlines() if x.startswith("boundaries: "))
        bounds[overhead] = [int(b) for b in line.split()[1].split("+")]
    assert len(bounds["0.001ms"]) > len(bounds["2ms"]) > len(bounds["1s"])
    assert bounds["0.001ms"][0] < bounds["2ms"][0] < bounds["1s"][0]
    assert bounds["1s"] == [75]
    assert (
        main([*base, "--simulate", "overhead=2ms,per-position=0.01ms", "--max-partitions", "3"])
        == 0
    )
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("boundaries: "))
    assert len(line.split()[1].split("+")) <= 3
    assert "pipeline:   partition-unroll{boundaries=" in out


def test_p99_objective(conformer, lengths, capsys):
    argv = ["tune-partitions", conformer, "--lengths", lengths, "--objective", "p99"]
    assert main([*argv, "--simulate", "overhead=2ms,per-position=0.01ms"]) == 0
    out = capsys.readouterr().out
    assert "objective: p99 latency, ties broken by the mean" in out
    assert "p99 vs host loop (a call a step):" in out


@pytest.mark.parametrize(
    ("extra", "content", "message"),
    [
        ([], "3\nfour\n", "lengths.txt:2: expected a positive integer, got 'four'"),
        ([], "3\n80\n", "a length of 80 exceeds the 75 steps the loop runs"),
        (["--objective", "median"], "3\n", "objective must be 'mean' or pNN"),
        (["--simulate", "overhead=2ms"], "3\n", "--simulate: missing per-position"),
        (["--positions", "0"], "3\n", "--positions must be at least 1"),
    ],
)
def test_errors(conformer, tmp_path, capsys, extra, content, message):
    path = tmp_path / "lengths.txt"
    path.write_text(content)
    argv = ["tune-partitions", conformer, "--lengths", str(path), "--max-len", "75", *extra]
    assert main(argv) == 2
    assert message in error_line(capsys)


def test_refuses_to_write_over_the_lengths(conformer, lengths, capsys):
    argv = ["tune-partitions", conformer, "--lengths", lengths, "-o", lengths]
    assert main([*argv, "--simulate", "overhead=1ms,per-position=1us"]) == 2
    assert "lengths file" in error_line(capsys)


def test_help_has_an_example(capsys):
    assert main(["tune-partitions", "--help"]) == 0
    out = capsys.readouterr().out
    assert "example:" in out and "--simulate overhead=2ms,per-position=0.01ms" in out
