"""The per-target call builders: keywords, defaults (fallback off for decoders, separate
weights above 1.9 GB) and the options each target refuses."""

from __future__ import annotations

import pytest

from neffkit.backends.neuron.targets import (
    SEPARATE_WEIGHTS_BYTES,
    TARGETS,
    NeuronOptions,
    api_of,
    build_call,
    resolve_options,
)
from neffkit.cli.compile import _TARGETS
from neffkit.errors import BackendError

_NONE = NeuronOptions()


def _call(target: str, options: NeuronOptions = _NONE, *, decoder=False, size=0):
    resolved = resolve_options(target, options, decoder=decoder)
    return build_call(target, "step", resolved, constant_bytes=size)


def test_each_target_calls_its_api() -> None:
    assert [api_of(t)[0] for t in TARGETS] == [
        "torch_neuron.trace",
        "torch_neuronx.trace",
        "torch_neuronx.trace",
        "torch.compile",
    ]
    assert _TARGETS == TARGETS  # the CLI spells them without importing torch


def test_inf1_keywords_and_the_fallback_default() -> None:
    assert _call("inf1").kwargs == {
        "compiler_args": [],
        "fallback": True,
        "dynamic_batch_size": False,
        "separate_weights": False,
    }
    # a decoder unit must not be cut into a CPU island per step
    assert _call("inf1", decoder=True).kwargs["fallback"] is False
    assert _call("inf1", NeuronOptions(fallback=True), decoder=True).kwargs["fallback"] is True


def test_separate_weights_default_follows_the_constants() -> None:
    big = SEPARATE_WEIGHTS_BYTES + 1
    assert _call("inf1", size=big).kwargs["separate_weights"] is True
    assert _call("inf2", size=big).kwargs["inline_weights_to_neff"] is False
    assert _call("inf2", size=SEPARATE_WEIGHTS_BYTES).kwargs["inline_weights_to_neff"] is True
    off = NeuronOptions(separate_weights=False)
    assert _call("trn1", off, size=big).kwargs["inline_weights_to_neff"] is True


def test_neuronx_targets_name_their_chip_unless_the_user_did() -> None:
    args = NeuronOptions(compiler_args=("--target", "trn1"), compiler_workdir="out")
    call = _call("inf2", args)
    assert call.kwargs == {
        "compiler_args": ["--target", "trn1"],
        "compiler_workdir": "out/step",
        "inline_weights_to_neff": True,
    }
    assert _call("trn1").kwargs["compiler_args"] == ["--target", "trn1"]


def test_trn2_compiles_with_fullgraph_and_flags_in_the_environment() -> None:
    call = _call("trn2", NeuronOptions(compiler_args=("--optlevel", "2", "--auto-cast", "none")))
    assert (call.api, call.kwargs) == ("torch.compile", {"backend": "neuron", "fullgraph": True})
    assert call.env == {"NEURON_CC_FLAGS": "--optlevel 2 --auto-cast none"}
    assert call.warm_calls == 1
    assert _call("trn2").env == {}


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        ("inf2", NeuronOptions(fallback=False), r"--fallback/--no-fallback apply to inf1 only"),
        ("trn1", NeuronOptions(dynamic_batch=True), r"--dynamic-batch applies to inf1 only"),
        ("trn2", NeuronOptions(separate_weights=True), r"no trn2 counterpart"),
        ("inf3", NeuronOptions(), r"unknown Neuron target 'inf3'"),
    ],
)
def test_refused_options_name_the_option_and_the_target(target, options, message) -> None:
    with pytest.raises(BackendError, match=message):
        resolve_options(target, options, decoder=False)


def test_compiler_args_parse_like_a_shell() -> None:
    assert NeuronOptions.parse_args('--O2 --cc "a b"') == ("--O2", "--cc", "a b")
    assert NeuronOptions.parse_args(["--x", 1]) == ("--x", "1")
    assert NeuronOptions.parse_args(None) == ()
    with pytest.raises(BackendError, match="compiler arguments"):
        NeuronOptions.parse_args('--cc "open')
