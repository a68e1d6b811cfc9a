"""Which inputs of an op fix its output's shape by their values, not by their shapes.

An output's shape follows from its inputs' shapes alone unless one of these operands is read:
``Slice(x, starts, ends)`` is as long as ``ends - starts`` says. The table also holds the few
scalar parameters that a lowering reads as Python numbers (``Trilu``'s k, ``Pad``'s value,
``NonMaxSuppression``'s thresholds). Two places need it: the torch backend's host loop (its
lowering reads these operands into Python values, which a trace records as constants) and
``unroll`` (a step that runs past a loop's exit keeps its declared shapes only when no such
operand changes with the step; the extra entries only make it more careful).
"""

from __future__ import annotations

#: op type -> the input positions whose values fix the output's shape (or a loop's length).
SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
    "Slice": (1, 2, 3, 4),
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Range": (0, 1, 2),
    "ConstantOfShape": (0,),
    "Pad": (1, 2, 3),
    "TopK": (1,),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "OneHot": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Split": (1,),
    "ReduceSum": (1,),
    "ReduceMean": (1,),
    "ReduceMax": (1,),
    "ReduceMin": (1,),
    "ReduceProd": (1,),
    "ReduceL1": (1,),
    "ReduceL2": (1,),
    "ReduceLogSum": (1,),
    "ReduceLogSumExp": (1,),
    "ReduceSumSquare": (1,),
    "CenterCropPad": (1,),
    "Trilu": (1,),
    "NonZero": (0,),
    "NonMaxSuppression": (2, 3, 4),
    "Compress": (1,),
    "Unique": (0,),
    "Col2Im": (1, 2),
    "AffineGrid": (1,),
    "DFT": (1, 2),
    "STFT": (1, 3),
    "MelWeightMatrix": (0, 1),
    "BlackmanWindow": (0,),
    "HannWindow": (0,),
    "HammingWindow": (0,),
    "SplitToSequence": (1,),
}
