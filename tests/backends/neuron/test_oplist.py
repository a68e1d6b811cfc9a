"""The Neuron operator lists: every shipped list parses with its source, commit and version and
known statuses, and the changelog replay of ``tools/neuron_oplist.py`` gives the states the
Neuron documentation's releases add up to."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from neffkit.backends.neuron import oplist, support
from neffkit.errors import BackendError
from tools import neuron_oplist

LISTS = ("inf1", "inf2_trn1", "trn2")

# a changelog in the documentation's form, newest release first: embedding added then removed,
# erf added, removed and added again, where limited by a nested bullet, one_hot with a
# condition in an "added" list, an entry listed again as already supported
SAMPLE = """
PyTorch Neuron release [package version 1.*.*.2.9.1.0, SDK 2.13.0]
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

Date: 08/28/2023

Added support for new operators:

- ``aten::erf``
* ``aten::one_hot``: Supported when ``num_classes`` is known at trace time.
      The dynamic version is not supported.

PyTorch Neuron Release [2.0.536.0]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

- The following are operators with limited support on Neuron. Unlike fully
  supported operators, these are not returned by get_supported_operations:

  - ``aten::where`` - Supported when used as a conditional selection (3-argument variant).

PyTorch Neuron Release [1.0.1001.0]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

Added support for new operators:

- ``aten::gelu``

Remove support for operators:

- ``aten::embedding``: Does not meet **performance** criteria
- ``aten::erf``: Error function does not meet **accuracy** criteria

PyTorch Neuron Release [1.0.763.0]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

Added support for new operators:

- ``aten::embedding``
- ``aten::erf``

These operators were already supported previously:

- ``aten::add``

PyTorch Neuron Release [1.0.552.0]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

Added support for new operators:

- ``aten::add``
- ``prim::Constant``
"""


def _raw(name: str) -> dict:
    path = resources.files("neffkit.backends.neuron").joinpath("oplists", f"{name}.json")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", LISTS)
def test_every_list_parses_with_its_source_commit_and_version(name: str) -> None:
    doc = _raw(name)
    loaded = support.load_oplist(name)
    assert loaded.source.startswith("https://github.com/aws-neuron/")
    assert doc["repo"] in loaded.source
    assert {e["status"] for e in doc["ops"].values()} <= set(support.STATUSES)
    assert all(op.startswith(("aten::", "prim::")) for op in doc["ops"])
    if loaded.unavailable:  # trn2: the page could not be read, and the file says so
        assert doc["ops"] == {} and doc["repo_commit"] is None
        return
    assert len(doc["repo_commit"]) == 40 and int(doc["repo_commit"], 16) >= 0
    assert doc["repo_commit"] in loaded.source
    assert doc["sdk_version"] and doc["retrieved"]
    assert len(doc["ops"]) > 30


def test_the_shipped_lists_hold_what_the_documentation_says() -> None:
    inf1 = support.load_oplist("inf1").ops
    # removed in 1.0.1001.0 for performance and never added back
    assert inf1["aten::embedding"]["status"] == "removed"
    assert "performance" in inf1["aten::embedding"]["note"]
    # removed in 1.0.1001.0 for accuracy, added again in 1.5.7.0
    assert inf1["aten::erf"] == {"status": "supported", "since": "1.5.7.0", "note": ""}
    assert inf1["aten::where"]["status"] == "limited"
    assert inf1["aten::argmax"]["status"] == "supported"
    assert "aten::gru" not in inf1
    inf2 = support.load_oplist("inf2_trn1").ops
    assert len(inf2) == 41 and "aten::zero_" in inf2  # the RST escape \\_ is undone


def test_the_replay_gives_the_state_after_the_last_release() -> None:
    releases = neuron_oplist.parse_changelog(SAMPLE)
    assert [r.version for r in releases] == [
        "1.*.*.2.9.1.0",
        "2.0.536.0",
        "1.0.1001.0",
        "1.0.763.0",
        "1.0.552.0",
    ]
    assert releases[0].sdk == "2.13.0" and releases[0].date == "08/28/2023"
    ops = neuron_oplist.replay(releases)
    assert ops["aten::add"] == {"status": "supported", "since": "1.0.552.0", "note": ""}
    assert ops["prim::Constant"]["status"] == "supported"
    assert ops["aten::gelu"]["since"] == "1.0.1001.0"
    assert ops["aten::embedding"] == {
        "status": "removed",
        "since": "1.0.1001.0",
        "note": "Does not meet performance criteria",
    }
    assert ops["aten::erf"] == {"status": "supported", "since": "1.*.*.2.9.1.0", "note": ""}
    assert ops["aten::where"]["status"] == "limited"
    assert ops["aten::where"]["note"].startswith("Supported when used as a conditional")
    assert ops["aten::one_hot"]["status"] == "limited"  # a condition in an "added" list
    assert ops["aten::one_hot"]["note"].endswith("The dynamic version is not supported.")


def test_a_table_row_per_op_and_a_built_document_the_loader_accepts() -> None:
    table = "+------+\n| aten::add |\n+------+\n| aten::zero\\_ |\n+------+\n"
    assert neuron_oplist.parse_table(table) == {
        "aten::add": {"status": "supported", "since": "", "note": ""},
        "aten::zero_": {"status": "supported", "since": "", "note": ""},
    }
    doc = neuron_oplist.build("inf1", SAMPLE, "a" * 40, "2026-12-07")
    assert doc["sdk_version"] == "torch-neuron 1.*.*.2.9.1.0 (Neuron SDK 2.13.0, 08/28/2023)"
    assert oplist._checked("inf1", doc).ops["aten::erf"]["status"] == "supported"


def test_the_loader_refuses_a_list_without_commit_or_with_an_unknown_status() -> None:
    doc = neuron_oplist.build("inf1", SAMPLE, "a" * 40, "2026-12-07")
    with pytest.raises(BackendError, match="repo_commit"):
        oplist._checked("inf1", {**doc, "repo_commit": None})
    bad = {**doc, "ops": {"aten::add": {"status": "maybe"}}}
    with pytest.raises(BackendError, match="aten::add: status"):
        oplist._checked("inf1", bad)
    with pytest.raises(BackendError, match="no entries"):
        oplist._checked("trn2", {**doc, "unavailable": "not read"})
    with pytest.raises(BackendError, match="no Neuron operator list"):
        support.load_oplist("inf3")


def test_the_tool_writes_the_list_and_refuses_a_changelog_it_cannot_read(tmp_path) -> None:
    rst = tmp_path / "ops.rst"
    rst.write_text(SAMPLE, encoding="utf-8")
    out = tmp_path / "inf1.json"
    assert neuron_oplist.main(["inf1", str(rst), "--commit", "b" * 40, "-o", str(out)]) == 0
    assert json.loads(out.read_text())["ops"]["aten::where"]["status"] == "limited"
    rst.write_text("no releases here\n", encoding="utf-8")
    assert neuron_oplist.main(["inf1", str(rst), "--commit", "b" * 40, "-o", str(out)]) == 1
