"""Tests for the in-code Conformer OCR example: determinism, ONNX export, splitting, EOS stop."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from neffkit.examples import (
    BOS_ID,
    EOS_ID,
    ConformerOCR,
    ConformerOCRBatch,
    build_conformer_decoder_step,
    build_conformer_encoder,
    build_conformer_ocr,
    build_conformer_ocr_batch,
    example_input,
    export_conformer_batch_onnx,
    export_conformer_onnx,
    export_decoder_step_onnx,
    export_encoder_onnx,
)

SMALL_WIDTH = 32  # memory length 8: keeps the split / EOS tests fast


def _run_torch(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(image)).numpy()


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _greedy(step, memory, max_len: int) -> list[int]:
    """Reference greedy decode over a one-step function ``step(tokens, memory) -> logits``."""
    tokens = [BOS_ID]
    for _ in range(max_len):
        nxt = int(np.argmax(step(np.array([tokens], dtype=np.int64), memory)[0]))
        tokens.append(nxt)
        if nxt == EOS_ID:
            break
    return tokens[1:]


@pytest.fixture(scope="module")
def default_model() -> ConformerOCR:
    return build_conformer_ocr()


@pytest.fixture(scope="module")
def default_onnx(default_model: ConformerOCR) -> onnx.ModelProto:
    return export_conformer_onnx(model=default_model)


def test_build_is_deterministic(default_model: ConformerOCR) -> None:
    rng_state = torch.get_rng_state()
    again = build_conformer_ocr()
    assert torch.equal(torch.get_rng_state(), rng_state), "building must not touch global RNG"
    assert not again.training and not default_model.training
    sd0, sd1 = default_model.state_dict(), again.state_dict()
    assert sd0.keys() == sd1.keys()
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    image = example_input()
    out0, out1 = _run_torch(default_model, image), _run_torch(again, image)
    assert out0.dtype == np.int64 and out0.shape[0] == 1 and 1 < out0.shape[1] <= 75
    np.testing.assert_array_equal(out0, out1)
    np.testing.assert_array_equal(example_input(), image)

    other = build_conformer_ocr(seed=1).state_dict()
    assert all(not torch.equal(sd0[k], other[k]) for k in sd0 if sd0[k].is_floating_point())
    bn = default_model.encoder.blocks[0].conv.bn
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


def test_onnx_export_keeps_loop_and_matches_torch(
    default_model: ConformerOCR, default_onnx: onnx.ModelProto, tmp_path, capfd
) -> None:
    model = default_onnx
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Loop") == 1
    assert "BatchNormalization" in ops, "BN should survive export so folding passes have work"
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["tokens"]

    depthwise = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        weight = next(i for i in model.graph.initializer if i.name == node.input[1])
        if attrs.get("kernel_shape") == [15] and attrs.get("group") == weight.dims[0]:
            depthwise.append(node)
            assert list(weight.dims) == [144, 1, 15]
            assert attrs["pads"] == [7, 7]
    assert len(depthwise) == 2  # one per encoder block

    image = example_input()
    expected = _run_torch(default_model, image)
    capfd.readouterr()
    got = _session(model).run(None, {"image": image})[0]
    assert "W:onnxruntime" not in capfd.readouterr().err, "ORT should not warn on the loop"
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)

    path = tmp_path / "conformer.onnx"
    saved = export_conformer_onnx(path, model=default_model)
    assert onnx.load(path) == saved
    assert [p.name for p in tmp_path.iterdir()] == ["conformer.onnx"]  # no temp left behind


def test_encoder_plus_decoder_step_matches_full_model() -> None:
    kwargs = {"width": SMALL_WIDTH, "seed": 3}
    full = build_conformer_ocr(**kwargs)
    encoder, step = build_conformer_encoder(**kwargs), build_conformer_decoder_step(**kwargs)
    assert all(
        torch.equal(v, full.encoder.state_dict()[k]) for k, v in encoder.state_dict().items()
    )
    assert all(torch.equal(v, full.decoder.state_dict()[k]) for k, v in step.state_dict().items())

    image = example_input(SMALL_WIDTH, seed=3)
    expected = _run_torch(full, image)[0].tolist()
    with torch.no_grad():
        memory = encoder(torch.from_numpy(image))
        assert memory.shape == (1, SMALL_WIDTH // 4, 144)

        def torch_step(tokens: np.ndarray, mem: torch.Tensor) -> np.ndarray:
            return step(torch.from_numpy(tokens), mem).numpy()

        assert _greedy(torch_step, memory, 75) == expected

    enc_sess = _session(export_encoder_onnx(model=full, **kwargs))
    dec_sess = _session(export_decoder_step_onnx(model=full, **kwargs))
    onnx_memory = enc_sess.run(None, {"image": image})[0]
    np.testing.assert_allclose(onnx_memory, memory.numpy(), rtol=1e-4, atol=1e-4)

    def onnx_step(tokens: np.ndarray, mem: np.ndarray) -> np.ndarray:
        return dec_sess.run(None, {"tokens": tokens, "memory": mem})[0]

    assert _greedy(onnx_step, onnx_memory, 75) == expected


def _force_eos(model: ConformerOCR, image: np.ndarray, gap: float = 0.2) -> int:
    """Raise the EOS output bias so greedy decoding stops at some step k >= 2; return k.

    Along the unmodified greedy path, let m_j = best non-EOS logit - EOS logit at step j. Adding
    d to the EOS bias keeps steps j < k unchanged iff d < m_j and makes EOS win at k iff d > m_k;
    so pick the last k whose margin is below all earlier ones by ``gap`` and d in between.
    """
    with torch.no_grad():
        memory = model.encoder(torch.from_numpy(image))
        tokens, margins = torch.tensor([[BOS_ID]]), []
        for _ in range(model.max_len):
            logits = model.decoder(tokens, memory)[0]
            eos = float(logits[EOS_ID])
            logits[EOS_ID] = -float("inf")
            margins.append(float(logits.max()) - eos)
            tokens = torch.cat([tokens, logits.argmax().view(1, 1)], dim=1)
        k = max(j + 1 for j in range(1, len(margins)) if margins[j] < min(margins[:j]) - gap)
        model.decoder.out.bias[EOS_ID] += (margins[k - 1] + min(margins[: k - 1])) / 2
    return k


def test_stops_at_eos() -> None:
    model = build_conformer_ocr(width=SMALL_WIDTH)
    image = example_input(SMALL_WIDTH)
    before = _run_torch(model, image)[0]
    assert EOS_ID not in before[:1], "random weights should not stop on step 1"
    k = _force_eos(model, image)
    assert 2 <= k < model.max_len

    after = _run_torch(model, image)[0]
    assert len(after) == k
    assert after[-1] == EOS_ID and EOS_ID not in after[:-1]
    np.testing.assert_array_equal(after[:-1], before[: k - 1])

    got = _session(export_conformer_onnx(model=model, width=SMALL_WIDTH)).run(
        None, {"image": image}
    )[0]
    np.testing.assert_array_equal(got[0], after)


@pytest.fixture(scope="module")
def small_batch_model() -> ConformerOCRBatch:
    return build_conformer_ocr_batch(width=SMALL_WIDTH, seed=2)


@pytest.fixture(scope="module")
def small_batch_onnx(small_batch_model: ConformerOCRBatch) -> onnx.ModelProto:
    return export_conformer_batch_onnx(model=small_batch_model, width=SMALL_WIDTH)


def _run_batch(model: ConformerOCRBatch, image: np.ndarray, max_tokens: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(image), torch.tensor(max_tokens)).numpy()


def test_batch_export_matches_torch(
    small_batch_model: ConformerOCRBatch, small_batch_onnx: onnx.ModelProto
) -> None:
    model = small_batch_onnx
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node].count("Loop") == 1
    assert [i.name for i in model.graph.input] == ["image", "max_tokens"]
    dims = [
        [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input
    ]
    assert dims == [["batch", 1, 32, SMALL_WIDTH], ["batch"]]
    (loop,) = [n for n in model.graph.node if n.op_type == "Loop"]
    body = next(a.g for a in loop.attribute if a.name == "body")
    state = [*body.input[2:], *body.output[1:]]  # tokens, done, counter in and out
    leading = [
        v.type.tensor_type.shape.dim[0].dim_param for v in state if v.type.tensor_type.shape.dim
    ]
    assert leading == ["batch"] * 4, "the loop state keeps its batch axis"
    out = model.graph.output[0]
    assert out.name == "tokens"
    assert [d.dim_param for d in out.type.tensor_type.shape.dim] == ["batch", "num_tokens"]
    sess = _session(model)
    for image, max_tokens in [
        (example_input(SMALL_WIDTH, seed=4), [7]),
        (example_input(SMALL_WIDTH, seed=5, batch=3), [5, 1, 12]),
    ]:
        want = _run_batch(small_batch_model, image, max_tokens)
        got = sess.run(None, {"image": image, "max_tokens": np.array(max_tokens)})[0]
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)
        assert got.shape == (len(max_tokens), max(max_tokens))


def test_batch_rows_equal_their_single_runs_up_to_their_lengths(
    small_batch_model: ConformerOCRBatch,
) -> None:
    images = example_input(SMALL_WIDTH, seed=6, batch=3)
    lengths = [9, 2, 4]
    batch = _run_batch(small_batch_model, images, lengths)
    assert batch.shape == (3, 9)
    for i, n in enumerate(lengths):
        alone = _run_batch(small_batch_model, images[i : i + 1], [n])
        assert alone.shape == (1, n), "a request runs exactly max_tokens steps without EOS"
        np.testing.assert_array_equal(batch[i, :n], alone[0])
        assert EOS_ID not in batch[i, :n], "the random weights should not stop early"
        assert (batch[i, n:] == EOS_ID).all(), "a done sequence is padded with EOS"
        unlimited = _run_batch(small_batch_model, images[i : i + 1], [75])[0]
        np.testing.assert_array_equal(alone[0], unlimited[:n])


def test_batch_equals_the_unbatched_model_and_stops_at_eos() -> None:
    model = build_conformer_ocr(width=SMALL_WIDTH)
    image = example_input(SMALL_WIDTH)
    batched = ConformerOCRBatch(model.encoder, model.decoder, model.max_len).eval()
    full = _run_torch(model, image)
    assert full.shape == (1, 75)
    np.testing.assert_array_equal(_run_batch(batched, image, [75]), full)

    k = _force_eos(model, image)  # the batched model shares the modified decoder
    stopped = _run_torch(model, image)
    assert stopped.shape == (1, k) and stopped[0, -1] == EOS_ID
    np.testing.assert_array_equal(_run_batch(batched, image, [75]), stopped)
    np.testing.assert_array_equal(_run_batch(batched, image, [k + 5]), stopped)
    shorter = _run_batch(batched, image, [k - 1])
    np.testing.assert_array_equal(shorter, stopped[:, : k - 1])
    # rows that stop at EOS and at their limit: each is its own run, padded with EOS
    images = np.concatenate([image, example_input(SMALL_WIDTH, seed=9), image])
    limits = [75, 75, k - 2]
    rows = [_run_batch(batched, images[i : i + 1], [n])[0] for i, n in enumerate(limits)]
    together = _run_batch(batched, images, limits)
    assert together.shape == (3, max(len(r) for r in rows))
    for row, alone in zip(together, rows):
        np.testing.assert_array_equal(row[: len(alone)], alone)
        assert (row[len(alone) :] == EOS_ID).all()
