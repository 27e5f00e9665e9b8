"""A graph with time on Lava: its network plan (``loihi.temporal``) built once, the samples streamed.

The plan's processes are Lava's own: ``LIFReset`` (run by Lava's ``PyLifResetModelBitAcc``),
``Sparse``/``DelaySparse`` and the host's ``RingBuffer`` sources; recorders of ours on the host
(``SpikeRecorder`` on each layer's ``s_out``, ``VarRecorder`` on a non-spiking layer's ``v``) write
every step into shared arrays, the host readout of the chip (Lava's ``Monitor`` hands its record
back one number per message: ~1 s per step at 50,000 neurons; it stays for ``states``). The
samples stream ``period`` steps apart through the one network (``integer.temporal.Timeline``):
``stream_period`` picks the shortest period whose stream equals the samples run one by one, so a
Lava run equals the fast simulator run per sample, and (``states``) every u and v equals its run of
the same stream.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable

import numpy as np

from ...errors import LensNetDeployError
from ..integer import temporal as T
from ..loihi.plan import NetworkPlan
from ..loihi.temporal import input_bits, temporal_plan

RUNTIMES = ("threads", "processes")


def run_lava(model: T.TemporalIntModel, inputs, period: int | None = None, runtime: str = "threads",
             states: bool = False, plan: NetworkPlan | None = None, seconds: dict | None = None,
             progress: Callable[[str], None] | None = None, lava_models: bool = False) -> T.IntRun:
    """The samples (B×T×shape) streamed through one Lava network; values per sample as
    ``run_reference`` gives them, states (with ``states``) over the whole stream (1 × chip steps).
    ``lava_models``: Lava's own bit-accurate models for the synapses too (``PySparseModelBitAcc``,
    ``PyDelaySparseModelBitAcc``) instead of our lean ones of the same arithmetic (slower; the tests
    hold both equal). ``seconds`` (a dict) receives the build time (processes, Lava's compiler, the start and the first
    step) and the run time (the other steps); ``progress`` each phase's name."""
    from ... import lava_compat

    if runtime not in RUNTIMES:
        raise LensNetDeployError(f"unknown Lava runtime {runtime!r} (available: {', '.join(RUNTIMES)})")
    lava_compat.install()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.monitor.process import Monitor

    from .buffers import create_array, open_array
    from .instantiate import instantiate
    from .procs import processes as P
    from .runtime.memory import shm_dir
    from .runtime.threads import thread_actors

    xs = T.integer_inputs(model, inputs)
    B, steps = next(iter(xs.values())).shape[:2]
    if plan is None:
        period = T.stream_period(model, xs) if period is None else period
        plan = temporal_plan(model, steps, period, bits=max(input_bits(x) for x in xs.values()))
    if plan.steps != steps:
        raise LensNetDeployError(f"this network streams samples of {plan.steps} steps; the inputs have {steps}")
    line = T.Timeline(B, steps, plan.period, model.latency)
    t0 = time.perf_counter()
    if progress:
        progress(f"building {len(plan.procs)} Lava processes")
    procs, models = instantiate(plan, feeds={name: line.inputs(x)[0].T for name, x in xs.items()})
    if lava_models:
        from lava.proc.sparse.models import PyDelaySparseModelBitAcc, PySparseModelBitAcc
        from lava.proc.sparse.process import DelaySparse, Sparse

        for proc in procs.values():
            if isinstance(proc, DelaySparse):
                models[proc] = PyDelaySparseModelBitAcc
            elif isinstance(proc, Sparse):
                models[proc] = PySparseModelBitAcc
    folder = shm_dir()
    recorders, monitors = [], []
    for name, layer in model.layers.items():
        for k, (pname, idx) in enumerate(plan.groups[name]):
            array = f"{name}.{k}".replace("/", "_")
            create_array(folder, array, (line.total, len(idx)), np.int64)
            rec = (P.SpikeRecorder if layer.spiking else P.VarRecorder)(
                shape=(len(idx),), buffer=str(folder), array=array, name=f"record {pname}")
            if layer.spiking:
                procs[pname].s_out.connect(rec.s_in)
            else:
                rec.ref.connect_var(procs[pname].v)
            recorders.append((name, idx, array))
            for var in ("s_out", "u", "v") if states else ():
                m = Monitor()
                m.probe(getattr(procs[pname], var), line.total)
                monitors.append((name, pname, idx, var, m))
    first = procs[plan.groups[next(iter(model.layers))][0][0]]
    with thread_actors() if runtime == "threads" else contextlib.nullcontext():
        if progress:
            progress("compiling and starting them")
        first.run(condition=RunSteps(num_steps=1),  # Lava compiles, builds and starts the network here
                  run_cfg=Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=models))
        built = time.perf_counter()
        if progress:
            progress(f"running {line.total} steps ({B} samples, period {plan.period})")
        if line.total > 1:
            first.run(condition=RunSteps(num_steps=line.total - 1))
    try:
        kept = {(name, var): np.zeros((1, line.total, layer.size), np.int64)
                for name, layer in model.layers.items() for var in ("s_out", "u", "v")}
        for name, pname, idx, var, m in monitors:
            kept[name, var][0, :, idx] = np.asarray(m.get_data()[pname][var], np.int64).reshape(line.total, -1).T
        chip = {n: np.zeros((1, line.total, layer.size), np.int64) for n, layer in model.layers.items()}
        for name, idx, array in recorders:
            chip[name][0][:, idx] = open_array(folder, array, "r")
    finally:
        first.stop()
        shutil.rmtree(folder, ignore_errors=True)
    if seconds is not None:
        seconds["build"] = built - t0
        seconds["run"] = time.perf_counter() - built
        seconds["steps"] = line.total - 1
    return T.collect(model, line, chip, {n: {"u": kept[n, "u"], "v": kept[n, "v"]} for n in model.layers}
                     if states else {})
