"""The ``neffkit`` command as a whole (:mod:`neffkit.cli`): help, ``python -m neffkit``,
``--debug``."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from neffkit.cli import build_parser, main


@pytest.mark.parametrize("command", [[], ["inspect"], ["convert"], ["verify"], ["run"]])
def test_help_exits_0_and_shows_an_example(command, capsys) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example:" in out and "neffkit " in out.split("example:")[1]


def test_python_dash_m_neffkit() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "neffkit", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "inspect" in r.stdout and "convert" in r.stdout


def test_no_command_prints_help_and_fails(capsys) -> None:
    assert main([]) == 2
    assert "usage: neffkit" in capsys.readouterr().err


def test_debug_shows_a_traceback(tmp_path, capsys) -> None:
    missing = str(tmp_path / "nope.onnx")
    assert main(["--debug", "inspect", missing]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "FrontendError" in err
    assert err.strip().splitlines()[-1].startswith("neffkit: error: ")
    assert main(["inspect", missing, "--debug"]) == 2  # also after the subcommand
    assert "Traceback" in capsys.readouterr().err


COMMANDS = [
    "inspect",
    "convert",
    "verify",
    "run",
    "optimize",
    "passes",
    "example",
    "fuzz",
    "reduce",
    "tune-partitions",
    "compile",
]


def test_help_lists_every_command_in_order(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    commands = out.split("positional arguments:")[1]
    listed = re.findall(r"^    ([\w-]+)(?: {2,}\S|$)", commands, re.M)  # a long name: help below
    assert listed == COMMANDS
    epilog = out.split("commands:")[1].split("exit status:")[0]
    assert sorted(re.findall(r"^  ([\w-]+) ", epilog, re.M)) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_handler_and_an_example(command: str, capsys) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sub.choices[command].get_default("func") is not None
    assert main([command, "--help"]) == 0
    assert f"example:\n  neffkit {command} " in capsys.readouterr().out


def test_help_does_not_import_torch_or_hypothesis() -> None:
    code = (
        "import sys; from neffkit.cli import build_parser, main; main(['--help']); "
        "print(sorted(m for m in ('torch', 'hypothesis') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith("[]"), r.stderr


def test_python_dash_m_neffkit_cli_is_the_same_command() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "neffkit.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout.startswith("neffkit ")
