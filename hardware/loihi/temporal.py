"""A graph with time (integer semantics v4) as a Loihi 2 network plan of Lava library processes.

Every layer of the integer model becomes ``LIFReset`` processes, one per group of its neurons that
share ``du`` and ``dv`` (Lava holds one of each per process), reset once per sample
(``reset_interval`` = the stream's period, ``reset_offset`` = the layer's offset + 1: Lava counts
steps from 1); every path a ``Sparse`` (``DelaySparse`` where it waits) of ``2·W`` at
``weight_exp − 1`` (Loihi drops a mixed-sign mantissa's lowest bit), split by the groups on both
sides; the inputs are ``RingBuffer``s on the host fed the stream of samples when it runs, and the
always-on source of bias synapses a ``RingBuffer`` cycling on for a sample's steps, off for the
gap. Samples stream through this one network ``period`` steps apart (``integer.temporal.Timeline``).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from ..integer import temporal as T
from ..target.chips import Target, load_target
from .plan import CubaLIFSpec, DelaySparseSpec, Link, NetworkPlan, RingSourceSpec, SparseSpec, narrow


def neuron_groups(layer: T.Layer) -> list[np.ndarray]:
    """The layer's neuron indices split by their (du, dv) pair, one group per Lava process."""
    du = np.broadcast_to(np.asarray(layer.du, np.int64), (layer.size,))
    dv = np.broadcast_to(np.asarray(layer.dv, np.int64), (layer.size,))
    keys = du * (1 << 16) + dv
    return [np.flatnonzero(keys == k) for k in np.unique(keys)]


def _per_neuron(values, size: int, idx: np.ndarray) -> np.ndarray | int:
    a = np.broadcast_to(np.asarray(values, np.int64), (size,))[idx]
    return int(a[0]) if a.size and (a == a[0]).all() else a


def input_bits(x: np.ndarray | None) -> int:
    """Message bits the input spikes need: 0 for binary spikes, else the count's width and a sign."""
    top = 0 if x is None else int(np.abs(np.asarray(x)).max(initial=0))
    return 0 if top <= 1 else top.bit_length() + 1


def temporal_plan(model: T.TemporalIntModel, steps: int, period: int | None = None,
                  target: str | Target = "loihi2", bits: int = 0) -> NetworkPlan:
    """The network that streams samples of ``steps`` steps ``period`` steps apart (default: the
    shortest gap its delayed and recurrent paths allow); ``bits``: message bits of the input spikes."""
    spec = target if isinstance(target, Target) else load_target(target)
    period = steps + T.lookback(model) if period is None else period
    (shape,) = model.inputs.values() if len(model.inputs) == 1 else (None,)
    plan = NetworkPlan(target=spec.name, depth=model.latency, input_shape=tuple(shape or ()),
                       outputs=list(model.outputs), steps=steps, period=period,
                       spike_nodes={n for n, layer in model.layers.items() if layer.spiking})
    for name, in_shape in model.inputs.items():
        n = int(np.prod(in_shape))
        plan.procs[name] = RingSourceSpec(name=name, node=name, shape=(n,), out_bound=(1 << max(bits - 1, 0)) - 1
                                          if bits else 1)
    if any(p.source == T.ONE for layer in model.layers.values() for p in layer.paths):
        cycle = (np.arange(period) < steps).astype(np.int32)[None, :]
        plan.procs[T.ONE] = RingSourceSpec(name=T.ONE, node=T.ONE, shape=(1,), pattern=cycle, constant=1)
    for name, layer in model.layers.items():
        parts = neuron_groups(layer)
        plan.groups[name] = []
        for k, idx in enumerate(parts):
            pname = name if len(parts) == 1 else f"{name}#{k}"
            plan.procs[pname] = CubaLIFSpec(
                name=pname, node=name, shape=(len(idx),), neurons=len(idx), vth=int(layer.vth),
                du=int(_per_neuron(layer.du, layer.size, idx[:1])), dv=int(_per_neuron(layer.dv, layer.size, idx[:1])),
                bias_mant=_per_neuron(layer.bias_mant, layer.size, idx),
                bias_exp=_per_neuron(layer.bias_exp, layer.size, idx),
                reset_interval=period, reset_offset=(layer.offset + 1) % period)
            plan.groups[name].append([pname, idx])
    for name, layer in model.layers.items():
        for j, p in enumerate(layer.paths):
            w = 2 * csr_matrix(p.weights, dtype=np.int64)
            sources = plan.groups.get(p.source) or [[p.source, np.arange(w.shape[1])]]
            graded = bits if p.source in model.inputs else 0
            for dst, rows in plan.groups[name]:
                for src, cols in sources:
                    block = csr_matrix(w[rows][:, cols])
                    block.eliminate_zeros()
                    if block.nnz == 0:
                        continue
                    sname = f"{dst}<{src}:{j}"
                    cls, extra = (DelaySparseSpec, {"delays": int(p.delay), "max_delay": int(p.delay)}) \
                        if p.delay else (SparseSpec, {})
                    # in_bound 0: 32-bit messages. Lava's own LIF model shifts a_in left by 6 in the
                    # message's own type, so an int16 message above 511 would wrap there (not on the chip)
                    plan.procs[sname] = cls(name=sname, node=name, weights=block.astype(narrow(block.data).dtype),
                                            weight_exp=p.weight_exp - 1, num_message_bits=graded,
                                            synops=int(block.nnz), **extra)
                    plan.links += [Link(src, "s_out", sname, "s_in"), Link(sname, "a_out", dst, "a_in")]
    return plan
