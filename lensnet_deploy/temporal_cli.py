"""``quantize``, ``simulate``, ``diff``, ``compile`` and ``run`` on NIR graphs with time (the graphs
other tools write).

Inputs are ``.npy`` arrays B×T×(input shape). ``simulate`` writes ``.npz`` files with one array per
NIR Output node (B×T×shape, keyed by the node's name) aligned step for step with the float
reference; integer runs also hold ``latency`` (the chip steps their layers lag the float graph) and
Lava runs ``period`` (the steps between samples streamed through the one network).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import nir
import numpy as np

from .errors import GraphError, LensNetDeployError


def load_npy(path: str | os.PathLike[str], what: str = "input") -> np.ndarray:
    """An array from a ``.npy`` file (never unpickled); one line naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise LensNetDeployError(f"{path}: no such {what} file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise LensNetDeployError(f"{path}: not a .npy array ({str(err).splitlines()[0][:120]})") from None


def read_inputs(path: str | os.PathLike[str]) -> np.ndarray:
    """A B×T×… array of numbers from a ``.npy`` file (never unpickled)."""
    x = load_npy(path)
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf" or x.ndim < 2:
        raise LensNetDeployError(f"{path}: inputs must be a numeric array B×T×(input shape), got "
                                 f"{getattr(x, 'dtype', type(x).__name__)} of shape {getattr(x, 'shape', '?')}")
    return x


def write_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    from .atomic import write_bytes_atomic

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def is_temporal_file(graph: nir.NIRGraph) -> bool:
    from .export.temporal import is_temporal
    from .hardware.integer.temporal_nir import is_temporal_integer

    return is_temporal(graph) or is_temporal_integer(graph)


def _need_dt(dt: float | None) -> float:
    if dt is None:
        raise LensNetDeployError("a NIR graph carries no time step: give --dt (seconds per step)")
    return dt


def quantize(graph: nir.NIRGraph, calib: Path, dt: float | None, method: str, reset: str | None,
             output: Path) -> None:
    from .export.nir_io import write_nir
    from .export.temporal import run_temporal
    from .hardware.integer import temporal as T
    from .hardware.integer.temporal_nir import to_nir

    x = read_inputs(calib)
    dt = _need_dt(dt)
    model = T.quantize_temporal(graph, x, dt, method, reset)
    flt = run_temporal(graph, x, dt, method, reset, record_voltages=True)
    run = T.run_fast(model, x)
    print(f"{'layer':<18}{'kind':<9}{'neurons':>8}{'dv':>6}{'du':>6}  {'k realised/k':>13}  "
          f"{'weight exps':<14}{'SQNR dB':>8}{'spikes equal':>13}{'count Δ':>9}")
    for name, layer in model.layers.items():
        node = graph.nodes[name]
        tau = getattr(node, "tau", getattr(node, "tau_mem", None))
        ratio = ""
        if tau is not None:
            k = dt / np.asarray(tau, np.float64) if method == "euler" else 1 - np.exp(-dt / np.asarray(tau))
            k = np.broadcast_to(k, layer.shape).reshape(-1)
            ratio = f"{float(np.mean(layer.dv / 4096 / k)):.5f}"
        exps = ",".join(str(p.weight_exp) for p in layer.paths)
        if layer.spiking:
            f, i = flt.spikes[name].numpy(), run.values[name]
            equal = f"{100 * float(np.mean(f == i)):.2f} %"
            delta = f"{100 * abs(float(i.sum()) - float(f.sum())) / max(1.0, float(f.sum())):.2f} %"
        else:
            equal, delta = "(voltage)", ""
        du = int(np.max(layer.du))
        print(f"{name[:17]:<18}{layer.kind:<9}{layer.size:>8}{int(np.max(layer.dv)):>6}"
              f"{du if du < 4095 else '—':>6}  {ratio:>13}  {exps[:13]:<14}{layer.weight_sqnr():>8.1f}{equal:>13}"
              f"{delta:>9}")
    write_nir(to_nir(model), output)
    print(f"wrote {output}: {len(model.layers)} CUBA layers, latency {model.latency} chip steps")


def simulate(graph: nir.NIRGraph, inputs: Path, backend: str, dt: float | None, method: str,
             reset: str | None, out: Path) -> None:
    from .export.temporal import is_temporal, run_temporal
    from .hardware.integer import temporal as T
    from .hardware.integer.temporal_nir import from_nir, is_temporal_integer

    x = read_inputs(inputs)
    if backend == "float":
        if not is_temporal(graph):
            raise LensNetDeployError("--backend float runs a float NIR graph with time; this is an integer one "
                                     "(use fast or reference)")
        run = run_temporal(graph, x, _need_dt(dt), method, reset)
        arrays = {k: v.numpy() for k, v in run.outputs.items()}
    else:
        if not is_temporal_integer(graph):
            raise LensNetDeployError(f"--backend {backend} runs an integer graph: quantize this one first "
                                     "(lensnet-deploy quantize G.nir --calib X.npy --dt DT -o Q.nir)")
        from .hardware.model import TemporalModel

        model = TemporalModel(from_nir(graph))
        extra = {}
        if backend == "lava":
            extra["period"] = np.array(T.stream_period(model.int, x))
            seconds: dict = {}
            run = model.simulate(x, "lava", period=int(extra["period"]), seconds=seconds,
                                 progress=lambda s: print(s, flush=True))
            print(f"Lava: built in {seconds['build']:.1f} s, ran {x.shape[0]} samples in {seconds['run']:.1f} s "
                  f"through one network (period {int(extra['period'])} steps)")
        else:
            run = model.simulate(x, backend)
        arrays = {**run.outputs, "latency": np.array(model.int.latency), **extra}
    write_npz(out, arrays)
    shapes = ", ".join(f"{k} {'×'.join(map(str, v.shape))}" for k, v in arrays.items() if v.ndim)
    print(f"wrote {out}: {shapes} ({backend})")


def diff(graph: nir.NIRGraph, inputs: Path, backends: list[str]) -> bool:
    """Compare two integer backends layer by layer, every step; True when every layer is equal."""
    from .hardware.integer.temporal_nir import from_nir, is_temporal_integer
    from .hardware.model import BACKENDS, TemporalModel

    if not is_temporal_integer(graph):
        raise GraphError("diff compares integer backends: quantize this graph first")
    for b in backends:
        if b not in BACKENDS:
            raise LensNetDeployError(f"unknown backend {b!r} (available: {', '.join(BACKENDS)})")
    model = TemporalModel(from_nir(graph))
    x = read_inputs(inputs)
    print(f"comparing {backends[0]} with {backends[1]} on {x.shape[0]} samples of {x.shape[1]} steps")
    a, b = (model.simulate(x, name).values for name in backends)
    for name in model.int.layers:
        differ = int(np.count_nonzero(a[name] != b[name]))
        if differ:
            sample, step = (int(i) for i in np.argwhere(a[name] != b[name])[0][:2])
            print(f"first difference at layer {name}, sample {sample}, step {step} ({differ:,} values differ)")
            return False
    print(f"{backends[0]} and {backends[1]} equal on all {len(model.int.layers)} layers, every one of {x.shape[1]} "
          f"steps of {x.shape[0]} samples")
    return True


def compile_build(graph: nir.NIRGraph, inputs: Path | None, steps: int | None, target: str | None, board: str,
                  output: Path):
    """``compile`` of an integer graph with time: the build folder, its table printed."""
    from .hardware.build import compile_temporal
    from .hardware.integer.temporal_nir import is_temporal_integer
    from .hardware.model import TemporalModel

    if not is_temporal_integer(graph):
        raise LensNetDeployError("compile takes an integer graph: quantize this graph with time first "
                                 "(lensnet-deploy quantize G.nir --calib X.npy --dt DT -o Q.nir)")
    from .datasets import check_outputs_apart

    check_outputs_apart([output / "model.q.nir", output / "plan.npz"], [("inputs", inputs)])
    x = read_inputs(inputs) if inputs is not None else None
    build = compile_temporal(TemporalModel(graph), target, board, inputs=x, steps=steps)
    out = build.save(output)
    return build, out
