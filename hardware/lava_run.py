"""Run a network plan on Lava's CPU simulator (``Loihi2SimCfg(select_tag="fixed_pt")``): built once,
many images streamed through it one per step, read back through the readout's shared buffers.

``LavaNetwork`` instantiates Lava's library processes and ours from the plan, connects them,
and keeps the runtime alive between ``run`` calls; ``close`` (or leaving a ``with`` block, or
the end of the program) stops it. Lava is imported only here, when a network is built.

Lava 0.10's runtime starts one OS process per ProcessModel (fork), about 20 MB each: the
LENS-Net networks have hundreds of processes. ``runtime="threads"`` (the default) runs the
same runtime, compiler and models with each actor a thread of this process instead, joined by
in-process channels with Lava's channel contract (``lava_procs.thread_channel``; Lava has no such
option: ``MultiProcessing``'s actor, channel and start/stop methods are swapped while the runtime
starts);
``runtime="processes"`` is Lava's own. Both give the same integers (tests).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InternalError, LensNetDeployError
from .network import LIBRARY, WARMUP, NetworkPlan
from .result import SimResult
from .semantics import centred_pixels

CHANNEL_SLOTS = 1  # Lava's pypy_channel_size (64 by default): a port sends one message per step, read that step
RUNTIMES = ("threads", "processes")
STALL_SECONDS = 600.0  # no step for this long: a process failed or the runtime hangs


def _release_freed_memory() -> None:
    """glibc keeps freed blocks of up to 32 MB in its heaps once a large one was freed (a dynamic
    mmap threshold) and gives every thread an arena: with hundreds of actors freeing per-step
    messages, resident memory grows to several times what is live. A fixed 128 KB threshold maps
    every large array on its own (returned on free) and two arenas bound the rest. No-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


class _ThreadActor(threading.Thread):
    """Lava's actor (a ProcessModel or runtime service loop) as a thread; like Lava's
    ``SystemProcess`` it keeps an exception for the runtime to report."""

    def __init__(self, target: Callable, kwargs: dict) -> None:
        super().__init__(daemon=True, name=f"lava-actor-{id(self)}")
        self._target_fn, self._kwargs = target, kwargs
        self._parent_pid = os.getpid()
        self._exception = None

    def run(self) -> None:
        try:
            self._target_fn(**self._kwargs)
        except Exception as err:  # noqa: BLE001 - reported through ``exception``, as Lava's processes do
            self._exception = (err, traceback.format_exc())

    @property
    def exception(self):
        return self._exception


@contextlib.contextmanager
def _thread_actors() -> Iterator[None]:
    """While Lava starts a runtime, build its actors as threads of this process, joined by
    in-process channels (``ThreadChannel``) instead of shared memory, so no shared-memory
    manager process is started either."""
    from lava.magma.compiler.channels.interfaces import ChannelType
    from lava.magma.runtime.message_infrastructure.multiprocessing import MultiProcessing

    from .lava_procs.thread_channel import ThreadChannel

    original = {name: getattr(MultiProcessing, name) for name in ("build_actor", "channel_class", "start")}

    def build_actor(self, target_fn, builder, exception_q=None):
        actor = _ThreadActor(target_fn, {"builder": builder, "exception_q": exception_q})
        actor.start()
        self._actors.append(actor)
        return actor

    def channel_class(self, channel_type):
        if channel_type != ChannelType.PyPy:
            raise LensNetDeployError(f"the threads runtime has only Python-to-Python channels, not {channel_type!r}")
        return ThreadChannel

    def start(self):
        self._smm = None
        # ``stop`` runs after this block (when the network closes): this instance's own, no manager to shut
        self.stop = lambda: [actor.join() for actor in self._actors]

    patched = {"build_actor": build_actor, "channel_class": channel_class, "start": start}
    for name, fn in patched.items():
        setattr(MultiProcessing, name, fn)
    try:
        yield
    finally:
        for name, fn in original.items():
            setattr(MultiProcessing, name, fn)


def _shm_dir() -> Path:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    return Path(tempfile.mkdtemp(prefix="lensnet-lava-", dir=base))


class LavaNetwork:
    """A plan made of Lava processes; ``run(images)`` streams a batch through it.

    ``capacity``: the most images one run holds (more are run in several batches)."""

    def __init__(
        self,
        plan: NetworkPlan,
        real_scales: list[np.ndarray],
        spike_nodes: set[str],
        capacity: int = 8,
        runtime: str = "threads",
        progress: Callable | None = None,
    ) -> None:
        if runtime not in RUNTIMES:
            raise LensNetDeployError(f"unknown Lava runtime {runtime!r} (available: {', '.join(RUNTIMES)})")
        self.runtime = runtime
        self.progress = progress
        self.plan = plan
        self.real_scales = real_scales
        self.spike_nodes = spike_nodes
        self.capacity = max(1, capacity)
        self.steps = 0  # steps run so far (Lava's time_step of the last step)
        self.seconds = {"build": 0.0, "run": 0.0}
        self._procs: dict[str, Any] | None = None
        self._run_cfg = None
        self._started = False
        self.folder: Path | None = None

    # --- the plan's summary -------------------------------------------------------------------
    @property
    def placement(self) -> dict[str, str]:
        return self.plan.placement

    @property
    def neuro_core_synop_share(self) -> float:
        return self.plan.neuro_core_synop_share

    @property
    def processes(self) -> dict[str, Any]:
        """The Lava process objects by name (built on first use)."""
        if self._procs is None:
            self._build()
        return self._procs  # type: ignore[return-value]

    # --- building ---------------------------------------------------------------------------
    def _build(self) -> None:
        from .. import lava_compat

        lava_compat.install()
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.conv.process import Conv
        from lava.proc.graded.process import GradedVec
        from lava.proc.lif.process import LIFReset
        from lava.proc.sparse.process import DelaySparse, Sparse

        from .lava_procs import library_models as LM
        from .lava_procs import models as M
        from .lava_procs import processes as P
        from .lava_procs.buffers import create_array

        t0 = time.perf_counter()
        _release_freed_memory()
        self.folder = _shm_dir()
        atexit.register(self.close)
        create_array(self.folder, "control", (3,), np.int64)[:] = (1, 0, 0)  # base, count, last step seen
        create_array(self.folder, "images", (self.capacity, *self.plan.input_shape), np.int32)
        readout = self.plan.procs["readout"]
        for k, spec in enumerate(readout.params["inputs"]):
            value_shape = (len(spec["channels"]), *spec["shape"][1:])
            create_array(self.folder, f"out{k}", (self.capacity, *value_shape), np.int64)
        exceptions: dict[Any, type] = {Conv: LM.FastConvModel, DelaySparse: LM.FastDelaySparseModel,
                                       Sparse: LM.LeanSparseModel, LIFReset: LM.LeanLIFResetModel,
                                       GradedVec: LM.LeanGradedVecModel}
        models = {
            "SumPool": M.PySumPoolModel,
            "Attention": M.PyAttentionModel,
            "SigmoidTable": M.PySigmoidTableModel,
            "Gate": M.PyGateModel,
            "Bilinear": M.PyBilinearModel,
            "Readout": M.PyReadoutModel,
        }
        procs: dict[str, Any] = {}
        for spec in self.plan.procs.values():
            params = dict(spec.params)
            if spec.library:
                module, _, cls = LIBRARY[spec.kind].rpartition(".")
                kind = getattr(importlib.import_module(module), cls)
                if spec.kind == "DelaySparse":  # one delay for every synapse: Lava takes it as an int
                    params["delays"] = int(params["delays"])
                import inspect

                named = "name" in inspect.signature(kind.__init__).parameters
                proc = kind(**params, name=spec.name) if named else kind(**params)
                proc.name = spec.name  # GradedVec takes no name: set it afterwards
                if "weights" in params:  # Lava's Sparse keeps a copy of its matrix: the plan's will do
                    proc.weights.init = params["weights"]
                if spec.constant is None:  # messages as wide as the plan's static bound needs
                    exceptions[proc] = LM.narrow_model(exceptions[kind], spec.in_bound)
                procs[spec.name] = proc
                continue
            base = getattr(P, spec.kind)
            if spec.kind in ("PixelSource", "Readout"):
                params["buffer"] = str(self.folder)
            procs[spec.name] = base(**params, name=spec.name)
            if spec.kind in models:  # one ProcessModel class per instance, with the ports it has
                ports = [p["port"] for p in params["inputs"]]
                exceptions[procs[spec.name]] = M.instance_model(models[spec.kind], base, ports)
        for link in self.plan.links:
            src = getattr(procs[link.src], link.src_port)
            if link.via:
                if link.via[0] == "flatten":
                    src = src.flatten()
                elif link.via[0] == "reshape":
                    src = src.reshape(tuple(link.via[1]))
                elif link.via[0] == "transpose":
                    src = src.transpose(list(link.via[1]))
                else:
                    raise InternalError(f"unknown port adapter {link.via}")
            src.connect(getattr(procs[link.dst], link.dst_port))
        self._procs = procs
        self._run_cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=exceptions)
        self.seconds["build"] += time.perf_counter() - t0

    # --- running --------------------------------------------------------------------------------
    def run(self, images: torch.Tensor, keep: bool = False) -> SimResult:
        """ImageNet-normalised images (B×3×H×W) through the network; every observed node's integers."""
        from .lava_procs.buffers import open_array

        if tuple(images.shape[1:]) != tuple(self.plan.input_shape):
            raise LensNetDeployError(
                f"the Lava network takes {self.plan.input_shape} images, got {tuple(images.shape[1:])}"
            )
        procs = self.processes
        runs = [
            self._run_batch(images[i : i + self.capacity], procs, open_array)
            for i in range(0, len(images), self.capacity)
        ]
        values = {k: torch.from_numpy(np.concatenate([r[k] for r in runs])) for k in runs[0]}
        raw = tuple(values[name] for name in self.plan.outputs)
        logits = tuple(r.double() * torch.as_tensor(s).view(1, -1, 1, 1) for r, s in zip(raw, self.real_scales))
        spikes = {k: v.to(torch.uint8) for k, v in values.items() if k in self.spike_nodes}
        return SimResult(logits, raw, spikes, values=values if keep else {})

    def _run_batch(self, images: torch.Tensor, procs: dict, open_array) -> dict[str, np.ndarray]:
        from lava.magma.core.run_conditions import RunSteps

        n = len(images)
        base = self.steps + 1 + (WARMUP if not self._started else 0)
        control = open_array(self.folder, "control")
        buffer = open_array(self.folder, "images")
        buffer[:n] = centred_pixels(images).numpy().astype(np.int32)
        control[:2] = (base, n)
        control.flush()
        buffer.flush()
        last = base + n - 1 + self.plan.depth
        t0 = time.perf_counter()
        readout = procs["readout"]
        condition = RunSteps(num_steps=last - self.steps, blocking=False)
        if not self._started:
            # Lava forks one child per process: freeze the parent's objects so that the children's
            # garbage collector does not touch (and so copy) every page of the parent's heap
            import gc
            import sys

            gc.collect()
            gc.freeze()
            # Lava's compiler flattens its process groups recursively, one level per process
            sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * len(procs) + 1000))
            with _thread_actors() if self.runtime == "threads" else contextlib.nullcontext():
                readout.run(
                    condition=condition, run_cfg=self._run_cfg, compile_config={"pypy_channel_size": CHANNEL_SLOTS}
                )
            self._started = True
        else:
            readout.run(condition=condition)
        self._wait(readout, control, base, n, last)
        self.steps = last
        self.seconds["run"] += time.perf_counter() - t0
        out: dict[str, np.ndarray] = {}
        spec_inputs = self.plan.procs["readout"].params["inputs"]
        for k, spec in enumerate(spec_inputs):
            data = np.array(open_array(self.folder, f"out{k}", "r")[:n])
            node = spec["node"]
            channels = np.asarray(spec["channels"])
            if node not in out:
                width = max(int(np.max(s["channels"])) + 1 for s in spec_inputs if s["node"] == node)
                out[node] = np.zeros((n, width, *data.shape[2:]), np.int64)
            out[node][:, channels] = data
        return out

    def _wait(self, readout, control, base: int, n: int, last: int) -> None:
        """Until the run's last step, with a progress bar over the images; a run that stops
        advancing (a failed process) is stopped and reported instead of hanging."""
        seen, stalled = int(control[2]), time.monotonic()
        done = 0
        while True:
            step = int(control[2])
            if step != seen:
                seen, stalled = step, time.monotonic()
            finished = min(n, max(0, step - base - self.plan.depth + 1))
            if self.progress is not None and finished > done:
                self.progress(finished - done)
                done = finished
            if step >= last:
                break
            failed = [a for a in self._actors() if getattr(a, "exception", None)]
            if failed or time.monotonic() - stalled > STALL_SECONDS:
                why = (
                    failed[0].exception[1].strip().splitlines()[-1] if failed else f"no step for {STALL_SECONDS:.0f} s"
                )
                self._abort()
                raise InternalError(f"the Lava network stopped at step {step} of {last}: {why}")
            time.sleep(0.02)
        readout.wait()

    def _actors(self) -> list:
        runtime = getattr(self._procs["readout"], "runtime", None) if self._procs else None
        infra = getattr(runtime, "_messaging_infrastructure", None)
        return list(getattr(infra, "actors", []) or [])

    def _abort(self) -> None:
        """Stop a runtime that cannot finish: kill its processes (threads die with the program)."""
        for actor in self._actors():
            if hasattr(actor, "kill"):
                with contextlib.suppress(Exception):
                    actor.kill()
        self._started = False
        self._procs = None

    def close(self) -> None:
        """Stop Lava's processes and remove the shared buffers."""
        if self._started and self._procs is not None:
            try:
                self._procs["readout"].stop()
            finally:
                self._started = False
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> LavaNetwork:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def lava_network(
    int_graph,
    target: str | Any = "loihi2",
    capacity: int = 8,
    runtime: str = "threads",
    progress: Callable | None = None,
) -> LavaNetwork:
    """The Loihi 2 network of an integer graph (a NIR graph, an IR graph or an ``IntegerModel``):
    Lava's library processes on neuro-cores, ours on embedded cores and the host (``network``).
    Importing Lava waits until the network is first run or its ``processes`` are asked for."""
    from ..export.ir import Graph
    from .int_nir import from_int_nir
    from .network import build_plan
    from .ops import IntOutput, IntSpike
    from .rules import check_integer_graph
    from .targets import load_target

    ir = getattr(int_graph, "ir", int_graph)  # an IntegerModel holds its checked graph
    if not isinstance(ir, Graph):
        ir = from_int_nir(ir)
    check_integer_graph(ir)
    _release_freed_memory()
    plan = build_plan(ir, load_target(target))
    scales = [o.op.real_scale for o in ir.outputs() if isinstance(o.op, IntOutput)]  # model order, like plan.outputs
    return LavaNetwork(plan, scales, {n.name for n in ir.of(IntSpike)}, capacity, runtime, progress)
