"""Run a network plan on Lava's CPU simulator (``Loihi2SimCfg(select_tag="fixed_pt")``): built once,
many images streamed through it one per step, read back through the readout's shared buffers.

``LavaNetwork`` instantiates the plan's processes (``instantiate``), keeps the runtime alive
between ``run`` calls, and ``close`` (or leaving a ``with`` block, or the end of the program)
stops it. Lava is imported only here, when a network is built. ``runtime="threads"`` (the
default) runs Lava's runtime with every actor a thread (``runtime.threads``);
``runtime="processes"`` is Lava's own, one OS process per model. Both give the same integers.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import InternalError, LensNetDeployError
from ..integer.result import SimResult
from ..integer.semantics import centred_pixels
from ..loihi.lower import WARMUP
from ..loihi.plan import NetworkPlan

CHANNEL_SLOTS = 1  # Lava's pypy_channel_size (64 by default): a port sends one message per step, read that step
RUNTIMES = ("threads", "processes")
STALL_SECONDS = 600.0  # no step for this long: a process failed or the runtime hangs


class LavaNetwork:
    """A plan made of Lava processes; ``run(images)`` streams a batch through it.

    ``capacity``: the most images one run holds (more are run in several batches). ``progress``
    (optional) is called ``progress(phase, done, total)`` as the network is built, compiled and
    started (``total`` 0: a phase that cannot count its work) and as it runs its steps, so that a
    bar moves while the pipeline fills (an image's maps come out ``plan.depth`` steps after it went in)."""

    def __init__(
        self,
        plan: NetworkPlan,
        capacity: int = 8,
        runtime: str = "threads",
        progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        if runtime not in RUNTIMES:
            raise LensNetDeployError(f"unknown Lava runtime {runtime!r} (available: {', '.join(RUNTIMES)})")
        self.runtime = runtime
        self.progress = progress
        self.plan = plan
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
        from ... import lava_compat

        lava_compat.install()
        from lava.magma.core.run_configs import Loihi2SimCfg

        from .buffers import create_array
        from .instantiate import instantiate
        from .runtime.memory import release_freed_memory, shm_dir

        t0 = time.perf_counter()
        self._report(f"build ({len(self.plan.procs)} processes)", 0, 0)
        release_freed_memory()
        self.folder = shm_dir()
        atexit.register(self.close)
        create_array(self.folder, "control", (3,), np.int64)[:] = (1, 0, 0)  # base, count, last step seen
        create_array(self.folder, "images", (self.capacity, *self.plan.input_shape), np.int32)
        for k, spec in enumerate(self.plan.readout.inputs):
            value_shape = (len(spec["channels"]), *spec["shape"][1:])
            create_array(self.folder, f"out{k}", (self.capacity, *value_shape), np.int64)
        self._procs, models = instantiate(self.plan, self.folder)
        self._run_cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=models)
        self.seconds["build"] += time.perf_counter() - t0

    # --- running --------------------------------------------------------------------------------
    def run(self, images: torch.Tensor, keep: bool = False) -> SimResult:
        """ImageNet-normalised images (B×3×H×W) through the network; every observed node's integers."""
        from .buffers import open_array

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
        logits = tuple(r.double() * torch.as_tensor(s).view(1, -1, 1, 1) for r, s in zip(raw, self.plan.real_scales))
        spikes = {k: v.to(torch.uint8) for k, v in values.items() if k in self.plan.spike_nodes}
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
            from .runtime.threads import thread_actors

            self._report("compile and start", 0, 0)
            with thread_actors() if self.runtime == "threads" else contextlib.nullcontext():
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
        spec_inputs = self.plan.readout.inputs
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
        """Until the run's last step, reporting the steps run; a run that stops
        advancing (a failed process) is stopped and reported instead of hanging."""
        seen, stalled = int(control[2]), time.monotonic()
        first, done = self.steps, -1
        while True:
            step = int(control[2])
            if step != seen:
                seen, stalled = step, time.monotonic()
            if step > done:  # steps rather than images: the first image needs plan.depth of them
                self._report(f"run ({n} image{'s' if n != 1 else ''})", max(0, step - first), last - first)
                done = step
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

    def _report(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)

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
