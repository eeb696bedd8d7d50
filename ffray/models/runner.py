"""Running an ONNX Runtime session on a batch: host arrays (``HostRunner``) or device arrays with
IO binding (``DeviceRunner``, in ``ffray.models.device``).

Both take ``{input name: array with N items}`` and return the outputs with N items each.
``flat_outputs``: the model's outputs have no batch axis (det_10g's anchors of all images are
stacked), so a group of g images gives g * A rows, returned as (g, A, ...).

Results never depend on which other items share a call: graphs with a fixed batch of 1 run item
by item; on the GPU every call has the same batch size (the last group is padded), so the same
kernels run whatever the load, and the output is reproducible.
"""

from __future__ import annotations

import numpy as np


def dynamic_batch(session) -> bool:
    return all(not isinstance(i.shape[0], int) for i in session.get_inputs())


def warm(runner, shapes: dict[str, tuple]) -> None:
    """Capture the calling thread's CUDA graph of ``runner`` (``DeviceRunner.warm``; other
    runners have nothing to capture). ``shapes``: each input's shape without the batch axis."""
    w = getattr(runner, "warm", None)
    if w is not None:
        w(shapes)


def _split_flat(out: np.ndarray, groups: int):
    return out.reshape(groups, out.shape[0] // groups, *out.shape[1:])


class HostRunner:
    """NumPy in, NumPy out: one item per call for fixed-batch graphs, groups of ``max_batch``
    for dynamic ones."""

    device = "cpu"

    def __init__(self, session, max_batch: int = 16, flat_outputs: bool = False):
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.dynamic = dynamic_batch(session)
        self.step = max_batch if self.dynamic else 1
        self.flat = flat_outputs

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        n = len(next(iter(feeds.values())))
        if n == 0:
            return [np.zeros((0,), np.float32) for _ in self.output_names]
        parts: list[list[np.ndarray]] = [[] for _ in self.output_names]
        for i in range(0, n, self.step):
            group = {k: np.ascontiguousarray(v[i:i + self.step]) for k, v in feeds.items()}
            g = len(next(iter(group.values())))
            outs = self.session.run(self.output_names, group)
            for j, o in enumerate(outs):
                parts[j].append(_split_flat(o, g) if self.flat else o)
        return [np.concatenate(p) for p in parts]

    def host_run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.run(feeds)
