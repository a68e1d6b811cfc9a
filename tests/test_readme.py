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
    # lint over the repository and the type checker over the IR and the passes run before the tests
    assert "ruff check" in tests and "mypy" in tests


def test_first_command_runs_the_main_job_on_the_embedded_example() -> None:
    setup_and_demo = _readme_commands()[0]
    assert "neffkit example conformer" in setup_and_demo
    assert "neffkit optimize" in setup_and_demo
    assert "constraints.txt" in setup_and_demo


def test_torch_is_pinned_to_the_cpu_build_in_the_install_step() -> None:
    with open(os.path.join(ROOT, "constraints.txt")) as f:
        assert "torch==2.13.0" in f.read()


def _pins() -> dict[str, str]:
    pins = {}
    with open(os.path.join(ROOT, "constraints.txt")) as f:
        for line in f:
            m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
            if m:
                pins[_canonical(m.group(1))] = m.group(2)
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_closure(extras: set[str]) -> set[str]:
    """Names of every distribution ``neffkit[extras]`` needs in this environment, transitively."""
    from importlib import metadata

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo: list[tuple[str, set[str]]] = [("neffkit", extras)]
    while todo:
        name, want = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency this platform does not install
        for text in dist.requires or []:
            req = Requirement(text)
            env = default_environment()
            if req.marker is not None:
                ok = any(req.marker.evaluate({**env, "extra": e}) for e in (want or {""}))
                if not ok:
                    continue
            key = _canonical(req.name)
            if key not in seen:
                seen.add(key)
                todo.append((req.name, set(req.extras)))
    return seen


def test_the_lock_pins_every_package_the_test_install_pulls() -> None:
    # a package that is not pinned can move under the README's commands with a new release
    pins = _pins()
    missing = sorted(_requirement_closure({"test"}) - set(pins))
    assert missing == [], f"constraints.txt does not pin {missing}: run bash tools/lock.sh"
    assert all(not v.endswith("*") for v in pins.values())


def test_the_install_commands_install_from_the_lock() -> None:
    setup_and_demo, tests = _readme_commands()[:2]
    for command in (setup_and_demo, tests):
        assert "-c constraints.txt" in command
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert "tools/lock.sh" in readme and "tools/test-latest.sh" in readme


def test_the_build_backend_is_pinned_too() -> None:
    # pip installs build requirements in an isolated environment that -c does not reach
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    assert requires and all("==" in r for r in requires)
