"""Example models built in code (random weights, fixed seeds) used as compiler workloads."""

from __future__ import annotations

from neffkit.examples.conformer import (
    BOS_ID,
    EOS_ID,
    ConformerDecoderStep,
    ConformerEncoder,
    ConformerOCR,
    ConformerOCRBatch,
    build_conformer_decoder_step,
    build_conformer_encoder,
    build_conformer_ocr,
    build_conformer_ocr_batch,
    example_input,
    export_conformer_batch_onnx,
    export_conformer_onnx,
    export_conformer_torchscript,
    export_decoder_step_onnx,
    export_encoder_onnx,
)

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "ConformerDecoderStep",
    "ConformerEncoder",
    "ConformerOCR",
    "ConformerOCRBatch",
    "build_conformer_decoder_step",
    "build_conformer_encoder",
    "build_conformer_ocr",
    "build_conformer_ocr_batch",
    "example_input",
    "export_conformer_batch_onnx",
    "export_conformer_onnx",
    "export_conformer_torchscript",
    "export_decoder_step_onnx",
    "export_encoder_onnx",
]
