"""The README's commands are the ones CI runs and the ones that exist."""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_commands() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    return re.findall(r"```sh\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    setup_and_demo, tests = _readme_commands()[:2]
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci_lines = [line for line in f.read().splitlines() if line and not line.startswith("#")]
    assert tests in ci_lines
    assert "pytest" in tests


def test_first_command_runs_the_main_job_on_the_embedded_example() -> None:
    setup_and_demo = _readme_commands()[0]
    assert "neffkit example conformer" in setup_and_demo
    assert "neffkit optimize" in setup_and_demo
    assert "constraints.txt" in setup_and_demo


def test_torch_is_pinned_to_the_cpu_build_in_the_install_step() -> None:
    with open(os.path.join(ROOT, "constraints.txt")) as f:
        assert "torch==2.13.0" in f.read()
