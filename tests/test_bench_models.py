"""The benchmark model builders (bench/models.py): valid models that onnxruntime runs, with
matching example inputs. Tiny sizes; the benchmarks build the full ones."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bench import models

TINY: dict[str, Callable[[], onnx.ModelProto]] = {
    "conformer_encoder": lambda: models.conformer_encoder(
        width=16, d_model=16, num_heads=2, encoder_layers=1, decoder_layers=1
    ),
    "conformer_decoder_step": lambda: models.conformer_decoder_step(
        width=16, d_model=16, num_heads=2, encoder_layers=1, decoder_layers=1, vocab_size=12
    ),
    "bert_base": lambda: models.bert_base_encoder(layers=1, hidden=16, heads=2, seq=6, vocab=40),
    **{name: (lambda n=name: models.light_model(n)) for name in models.LIGHT},
    "shared_weights": lambda: models.shared_weights_model(layers=6, width=8),
    "unrolled_decoder": lambda: models.unrolled_decoder(
        steps=3, d_model=16, layers=1, vocab=12, memory_len=4
    ),
}


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def test_every_builder_has_a_tiny_version() -> None:
    assert set(TINY) == set(models.BUILDERS)


@pytest.mark.parametrize("name", list(TINY))
def test_builder_makes_a_valid_model_that_runs(name: str) -> None:
    model = TINY[name]()
    onnx.checker.check_model(model, full_check=True)
    assert models.bench_name(model) == name
    feeds = models.inputs_for(model)
    outs = _run(model, feeds)
    assert outs and all(np.isfinite(np.asarray(o, np.float64)).all() for o in outs)
    assert models.inputs_for(model).keys() == feeds.keys()  # deterministic
    for k, v in models.inputs_for(model).items():
        np.testing.assert_array_equal(v, feeds[k])


def test_light_inputs_are_the_shipped_arange() -> None:
    from neffkit.testing.onnx_cases import light_cases

    case = next(c for c in light_cases() if c.name == "light/light_resnet50")
    feeds = models.inputs_for(models.light_model("light_resnet50"))
    (x,) = feeds.values()
    np.testing.assert_array_equal(x, case.data_sets[0][0][0])
    out = _run(case.model, feeds)[0]
    np.testing.assert_allclose(out, case.data_sets[0][1][0], rtol=1e-3, atol=1e-6)


def test_token_inputs_cover_the_vocabulary() -> None:
    model = models.bert_base_encoder(layers=1, hidden=16, heads=2, seq=64, vocab=40)
    feeds = models.inputs_for(model)
    assert feeds["input_ids"].dtype == np.int64
    assert 0 <= feeds["input_ids"].min() and feeds["input_ids"].max() < 40
    assert feeds["input_ids"].max() >= 10  # beyond random_inputs' default [0, 10)
    assert (feeds["attention_mask"] == 1).all()


def test_unrolled_decoder_is_unrolled_and_repeats_memory_projections() -> None:
    steps = 4
    model = models.unrolled_decoder(steps=steps, d_model=16, layers=1, vocab=12, memory_len=4)
    ops = [n.op_type for n in model.graph.node]
    assert "Loop" not in ops
    tokens, logits = _run(model, models.inputs_for(model))
    assert tokens.shape == (1, steps) and logits.shape == (1, steps, 12)
    # each step projects the memory again: the memory feeds one MatMul per K and V per step
    uses = [n for n in model.graph.node if "memory" in n.input and n.op_type == "MatMul"]
    assert len(uses) == 2 * steps


def test_shared_weights_has_duplicate_constants() -> None:
    model = models.shared_weights_model(layers=6, width=8, distinct=3)
    blobs = [t.raw_data or onnx.numpy_helper.to_array(t).tobytes() for t in model.graph.initializer]
    assert len(blobs) == 6 and len(set(blobs)) == 3
    consts = [n for n in model.graph.node if n.op_type == "Constant"]
    assert len(consts) == 12


def test_agreement_ignores_elements_near_zero_relative_to_the_output_scale() -> None:
    from bench import optimizers

    ref = {"y": np.array([10.0, 5.0, 0.002], np.float32)}
    # the 0.002 element (2e-4 of the scale) is off by 1e-6 (rel 5e-4): float32 noise there
    near_zero_off = {"y": np.array([10.0, 5.0, 0.002001], np.float32)}
    r = optimizers.compare(ref, near_zero_off)
    assert r["agree"] and r["max_rel"] == 0.0 and r["max_rel_1e-3"] > 4e-4
    # an element at the output's scale off by 1e-3 relative: a real change
    big_off = {"y": np.array([10.01, 5.0, 0.002], np.float32)}
    r = optimizers.compare(ref, big_off)
    assert not r["agree"] and r["max_rel"] > 9e-4


def test_float64_conversion_widens_weights_types_and_casts() -> None:
    from bench import optimizers

    m64 = optimizers.to_float64(models.shared_weights_model(layers=2, width=4))
    assert all(t.data_type != onnx.TensorProto.FLOAT for t in m64.graph.initializer)
    assert m64.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    sess = ort.InferenceSession(m64.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.ones([d.dim_value or 1 for d in m64.graph.input[0].type.tensor_type.shape.dim])
    (y,) = sess.run(None, {m64.graph.input[0].name: x})
    assert y.dtype == np.float64
