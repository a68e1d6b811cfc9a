"""Sizes of what crosses between the host and the compiled units of a decoder loop, per step.

The carried values of a loop at each step are taken from the loop itself
(``neffkit.tune.measure.find_loop``: the body stepped on onnxruntime from the real starting
values), so the counts hold for any loop form (the growing tokens of the host loop, the
fixed-size buffers of the padded one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: the iteration number (int64) and the condition (bool) a host loop hands to every step
_ITER, _COND = 8, 1


@dataclass(frozen=True)
class UnitSizes:
    """Bytes of a loop's interface, for one batch.

    Attributes:
        inputs: the model's runtime inputs.
        captured: the outer values the body reads (the encoder output), handed to every step.
        state: ``state[t]``: the carried values step t starts from, for t in 1..max_len + 1
            (``state[max_len + 1]`` is what the last step returns); ``state[0]`` is unused.
    """

    inputs: int
    captured: int
    state: tuple[int, ...]

    @property
    def handed_to_loop(self) -> int:
        """What the encoder unit returns to the host: the starting state and the captures."""
        return self.state[1] + self.captured

    def step_in(self, t: int) -> int:
        """A host-loop step's inputs: iteration number, condition, state, captures."""
        return _ITER + _COND + self.state[t] + self.captured

    def step_out(self, t: int) -> int:
        """A host-loop step's outputs: the condition and the next state."""
        return _COND + self.state[t + 1]

    def state_in(self, t: int) -> int:
        """A later partition's inputs when it starts at step t: condition, state, captures."""
        return _COND + self.state[t] + self.captured

    def state_out(self, t: int) -> int:
        """A partition's outputs when the loop goes on at step t: condition and state."""
        return _COND + self.state[t]


def unit_sizes(graph: object, feeds: Mapping[str, np.ndarray], max_len: int) -> UnitSizes:
    """The sizes for ``graph``'s one top-level Loop at the batch of ``feeds``."""
    from neffkit.ir.serde import to_onnx
    from neffkit.tune.measure import find_loop

    loop = find_loop(to_onnx(graph), feeds)
    states = loop.states(max_len + 1)
    body_outputs = len(loop.body.graph.output)
    if body_outputs != 1 + len(loop.carried):
        raise ValueError(f"the loop has scan outputs ({body_outputs} body outputs): not counted")
    sizes = [0] + [sum(int(np.asarray(x).nbytes) for x in s) for s in states]
    captured = sum(int(np.asarray(x).nbytes) for x in loop.captured.values())
    inputs = sum(int(np.asarray(x).nbytes) for x in feeds.values())
    return UnitSizes(inputs, captured, tuple(sizes))
