"""An integer model of a graph with time on Lava's own bit-accurate processes (first cut).

Every layer is a ``lava.proc.lif.process.LIFReset`` run by Lava's own ``PyLifResetModelBitAcc``
(u and v zeroed at the step the layer's first value arrives: ``reset_offset = offset + 1``, Lava
counting steps from 1); every path a ``Sparse`` (``DelaySparse`` with its delay) of ``2·W`` at
``weight_exp − 1`` (Loihi's mixed-sign mantissas); inputs and the always-on bias source are
``RingBuffer``s; spikes and readout voltages are probed by ``Monitor``s. One build per sample: the
streamed network of many samples is the Loihi plan's (issue 29).
"""

from __future__ import annotations

import contextlib

import numpy as np
from scipy.sparse import csr_matrix

from ...errors import DesignRuleError
from ..integer import temporal as T


def _uniform(layer: T.Layer, key: str) -> int:
    values = np.unique(np.asarray(getattr(layer, key)))
    if values.size != 1:
        raise DesignRuleError(layer.name, key, "one value per LIF process (layers of several are split: to come)",
                              f"{values.size} values")
    return int(values[0])


def run_lava(model: T.TemporalIntModel, inputs, threads: bool = True) -> T.IntRun:
    """Each sample through the layers as Lava's own processes; the values aligned like ``run_reference``."""
    from ... import lava_compat

    lava_compat.install()
    xs = T.integer_inputs(model, inputs)
    B, steps = next(iter(xs.values())).shape[:2]
    values = {name: np.zeros((B, steps, *layer.shape), np.int64) for name, layer in model.layers.items()}
    total = steps + model.latency
    states = {name: {k: np.zeros((B, total, layer.size), np.int64) for k in ("u", "v")}
              for name, layer in model.layers.items()}
    for b in range(B):
        run = _one_sample(model, {k: v[b] for k, v in xs.items()}, steps, threads)
        for name, layer in model.layers.items():
            kept = run[name]["s_out" if layer.spiking else "v"]
            values[name][b] = kept[layer.offset:layer.offset + steps].reshape(steps, *layer.shape)
            for k in ("u", "v"):
                states[name][k][b] = run[name][k]
    return T.IntRun(values, {o: values[src] for o, src in model.outputs.items()}, states)


def _one_sample(model: T.TemporalIntModel, x: dict[str, np.ndarray], steps: int, threads: bool
                ) -> dict[str, np.ndarray]:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIFReset
    from lava.proc.monitor.process import Monitor
    from lava.proc.sparse.process import DelaySparse, Sparse

    from .runtime.threads import thread_actors

    total = steps + model.latency
    sources = {}
    for name, data in x.items():
        padded = np.zeros((data.shape[1], total), np.int32)
        padded[:, :steps] = data.T
        sources[name] = RingBuffer(data=padded)
    if any(p.source == T.ONE for layer in model.layers.values() for p in layer.paths):
        sources[T.ONE] = RingBuffer(data=np.ones((1, total), np.int32))
    procs = {}
    for name, layer in model.layers.items():
        procs[name] = LIFReset(shape=(layer.size,), du=_uniform(layer, "du"), dv=_uniform(layer, "dv"),
                               vth=int(layer.vth), bias_mant=np.asarray(layer.bias_mant),
                               bias_exp=np.asarray(layer.bias_exp), reset_interval=total + 1,
                               reset_offset=layer.offset + 1, name=name)
    graded = {name: int(np.abs(data).max(initial=0)).bit_length() + 1 for name, data in x.items()}
    for name, layer in model.layers.items():
        for p in layer.paths:
            weights = csr_matrix(2 * p.weights)
            bits = graded.get(p.source, 0) if np.abs(x.get(p.source, np.zeros(1))).max(initial=0) > 1 else 0
            syn = DelaySparse(weights=weights, delays=int(p.delay), weight_exp=p.weight_exp - 1,
                              num_weight_bits=8, num_message_bits=bits) if p.delay else \
                Sparse(weights=weights, weight_exp=p.weight_exp - 1, num_weight_bits=8, num_message_bits=bits)
            src = sources[p.source] if p.source in sources else procs[p.source]
            src.s_out.connect(syn.s_in)
            syn.a_out.connect(procs[name].a_in)
    monitors = {}
    for name in model.layers:
        for var in ("s_out", "u", "v"):
            monitors[name, var] = Monitor()
            monitors[name, var].probe(getattr(procs[name], var), total)
    first = next(iter(procs.values()))
    with thread_actors() if threads else contextlib.nullcontext():
        first.run(condition=RunSteps(num_steps=total), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    try:
        out: dict[str, dict[str, np.ndarray]] = {name: {} for name in model.layers}
        for (name, var), m in monitors.items():
            out[name][var] = np.asarray(m.get_data()[name][var], np.int64).reshape(total, -1)
        return out
    finally:
        first.stop()
