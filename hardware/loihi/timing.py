"""Time in the network: which step an image's value reaches each neuron output, and the delays
that align the operands of every join.

Every synapse takes one step; neurons and our processes none. Image ``i`` reaches a part at step
``i + offset``; where a consumer reads parts of different offsets, the earlier ones pass an
identity ``DelaySparse`` (at most ``max_delay`` steps each) into a relay neuron, so that every
join sees one image per step: the network takes a new image every step (a pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.sparse import identity

from ..target.chips import Target
from .plan import DelaySparseSpec, Spec, relay_spec, sparse_spec


class Builder(Protocol):
    """What the timing pass needs of the lowering: the target, the plan's add and link, its memo."""

    t: Target
    delayed: dict[tuple[str, int], Part]

    def add(self, spec: Spec) -> Spec: ...

    def link(self, src: str, src_port: str, dst: str, dst_port: str, via: tuple = ()) -> None: ...


@dataclass
class Part:
    """A neuron output carrying (part of) an IR node's value: ``channels`` of the value; planes
    (``D`` binary rows per channel, channel-major) or graded integers (``D = 1``); image ``i``
    arrives at step ``i + offset``; ``bias`` per channel completes a relay's value."""

    proc: str
    port: str
    channels: np.ndarray
    D: int
    graded: bool
    offset: int
    shape: tuple[int, ...]
    bound: int  # static bound of |message|
    bias: np.ndarray | None = None

    @property
    def bits(self) -> int:
        """Payload bits of its messages (0: binary spikes)."""
        return 0 if not self.graded else max(1, int(self.bound).bit_length() + 1)


def delayed(b: Builder, part: Part, steps: int) -> Part:
    """``part`` arriving ``steps`` later: an identity DelaySparse into a relay neuron (a chain of
    them beyond ``max_delay``); built once per (part, steps)."""
    if steps <= 0:
        return part
    key = (part.proc, steps)
    if key not in b.delayed:
        rows = int(np.prod(part.shape))
        d = min(steps - 1, b.t.max_delay)
        syn = b.add(sparse_spec(DelaySparseSpec, f"{part.proc}/delay{steps}",
                                identity(rows, dtype=np.int64, format="csr"), part, delays=d,
                                node=part.proc.split("/")[0], synops=rows, in_bound=part.bound))
        b.link(part.proc, part.port, syn.name, "s_in", ("flatten",))
        relay = b.add(relay_spec(f"{syn.name}/relay", part, part.shape, syn.node, part.bound))
        b.link(syn.name, "a_out", relay.name, "a_in", ("reshape", part.shape))
        moved = Part(relay.name, "s_out", part.channels, part.D, part.graded, part.offset + 1 + d, part.shape,
                     part.bound, part.bias)
        b.delayed[key] = delayed(b, moved, steps - 1 - d)
    return b.delayed[key]
