"""Many images on a Ray cluster: each worker builds the integer model's backend once and streams
its share of the batches; the driver merges the results, so they equal a one-process run.

``cluster`` is ``"local"`` (a local Ray cluster with one worker per core), ``"local:N"`` (N
workers) or the address of a running Ray cluster (``HOST:PORT``, ``ray://HOST:PORT`` or
``auto``). Every node of a cluster needs this package and its stack installed (README).

Faults: a worker that dies has its batch handed to a fresh worker; the driver alone writes
outputs, so nothing is lost or written twice. Ray is imported only here and only when a
cluster is asked for.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InternalError, LensNetDeployError
from .hardware.integer.result import SimResult
from .hardware.model import IntegerModel

Batch = torch.Tensor | Callable[[], torch.Tensor]
log = logging.getLogger(__name__)


class ClusterError(LensNetDeployError):
    """A cluster that cannot be started or reached, or Ray missing."""


@dataclass(frozen=True)
class ClusterSpec:
    """``workers`` is set for a local cluster; ``address`` for an existing one."""

    workers: int | None = None
    address: str | None = None

    @property
    def local(self) -> bool:
        return self.address is None


def parse_cluster(spec: str) -> ClusterSpec:
    """``local``, ``local:N`` or an address."""
    spec = spec.strip()
    if spec == "local":
        return ClusterSpec(workers=os.cpu_count() or 1)
    if spec.startswith("local:"):
        count = spec.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ClusterError(f"--cluster {spec}: give local:N with N a positive number of workers")
        return ClusterSpec(workers=int(count))
    if not spec:
        raise ClusterError("--cluster: give local, local:N or the address of a Ray cluster")
    return ClusterSpec(address=spec)


def _import_ray():
    try:
        import ray
    except Exception as err:  # absent, or installed but broken
        first = (str(err).splitlines() or [""])[0]
        raise ClusterError(f"Ray is not usable here ({type(err).__name__}: {first}); "
                           "install it with `pip install ray` or run without --cluster") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with one line, where Ray itself would retry for a minute."""
    if address == "auto":
        return
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--cluster {address}: not a Ray address (HOST:PORT, ray://HOST:PORT or auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            speaks = _speaks_http2(conn, timeout)
    except OSError as err:
        raise ClusterError(f"cannot reach the Ray cluster at {address} ({err.strerror or err})") from None
    if not speaks:
        # Ray would retry a server that is not its own for minutes, logging a warning every few seconds
        raise ClusterError(f"{address} answers but is not a Ray cluster (no gRPC server there: "
                           "give the head's GCS port, 6379 by default, or ray://HOST:10001)")


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS


def _speaks_http2(conn: socket.socket, timeout: float) -> bool:
    """Whether the server behind ``conn`` answers the HTTP/2 preface with a SETTINGS frame, as
    every gRPC server (Ray's GCS, the Ray client server) does."""
    conn.settimeout(timeout)
    try:
        conn.sendall(HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:
        return False
    return head[3] == 4  # frame type 4: SETTINGS


@contextmanager
def ray_session(spec: ClusterSpec) -> Iterator[int]:
    """Start or join the cluster; yields the number of workers to use. A cluster we started
    is shut down at the end; one we joined is left running."""
    ray = _import_ray()
    if ray.is_initialized():
        yield spec.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        return
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
             "configure_logging": True}
    try:
        if spec.local:
            ray.init(num_cpus=spec.workers, object_store_memory=1 << 30, **quiet)
            workers = int(spec.workers or 1)
        else:
            _check_reachable(spec.address or "")
            ray.init(address=spec.address, **quiet)
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    except ClusterError:
        raise
    except Exception as err:
        where = "a local Ray cluster" if spec.local else f"the Ray cluster at {spec.address}"
        raise ClusterError(f"cannot start {where} ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    try:
        yield workers
    finally:
        ray.shutdown()


class _Worker:
    """One Ray actor: the prepared model and its backend, built on the first batch and kept."""

    def __init__(self, graph, backend: str, threads: int) -> None:
        torch.set_num_threads(threads)
        self.model = IntegerModel(graph)
        self.backend = backend

    def pid(self) -> int:
        return os.getpid()

    def run(self, index: int, images: np.ndarray, full: bool) -> tuple[int, SimResult]:
        result = self.model.simulate(torch.from_numpy(images), self.backend)
        if not full:
            result = SimResult(logits=result.logits, raw=result.raw)
        return index, result


def _cause(err: Exception) -> Exception:
    """A worker's own exception (Ray wraps it) so that the user sees our one-line error."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, LensNetDeployError):
        return cause
    return InternalError(f"a cluster worker failed: {str(err).strip().splitlines()[-1]}")


def map_batches(model: IntegerModel, batches: Sequence[Batch], backend: str, cluster: str, *,
                full: bool = True, on_done: Callable[[int, SimResult], None] | None = None,
                threads: int = 1) -> Iterator[tuple[int, SimResult]]:
    """Run every batch (a tensor, or a function that loads one) on the cluster and yield
    ``(index, result)`` as each finishes. ``full=False`` returns logits and raw integers only
    (what maps need; spike counts of a large model are a gigabyte per image)."""
    spec = parse_cluster(cluster)
    with ray_session(spec) as workers:
        ray = _import_ray()
        actor = ray.remote(num_cpus=1, max_restarts=0)(_Worker)
        graph_ref = ray.put(model.ir)
        count = max(1, min(workers, len(batches)))
        pool = [actor.remote(graph_ref, backend, threads) for _ in range(count)]
        replacements = count  # at most as many fresh workers as we started
        todo = deque(range(len(batches)))
        running: dict = {}  # object ref → (batch index, worker)

        def submit(worker) -> None:
            index = todo.popleft()
            item = batches[index]
            x = item() if callable(item) else item
            running[worker.run.remote(index, x.numpy(), full)] = (index, worker)

        idle = list(pool)
        while todo or running:
            while todo and idle:
                submit(idle.pop())
            if not running:
                raise ClusterError("every cluster worker died; no batch can run")
            ready, _ = ray.wait(list(running), num_returns=1)
            index, worker = running.pop(ready[0])
            try:
                got, result = ray.get(ready[0])
            except ray.exceptions.RayActorError as err:
                todo.appendleft(index)  # the worker died: its batch goes to a fresh one
                log.warning("a cluster worker died (%s); batch %d goes to another worker",
                            type(err).__name__, index)
                if replacements > 0:
                    replacements -= 1
                    idle.append(actor.remote(graph_ref, backend, threads))
                continue
            except ray.exceptions.RayTaskError as err:
                raise _cause(err) from None
            idle.append(worker)
            if on_done is not None:
                on_done(got, result)
            yield got, result


def concat(results: Sequence[SimResult]) -> SimResult:
    """Results of consecutive batches as one (what one process would have returned)."""
    first = results[0]
    return SimResult(
        logits=tuple(torch.cat([r.logits[i] for r in results]) for i in range(len(first.logits))),
        raw=tuple(torch.cat([r.raw[i] for r in results]) for i in range(len(first.raw))),
        spike_counts={k: torch.cat([r.spike_counts[k] for r in results]) for k in first.spike_counts},
        observed_max={k: max(r.observed_max[k] for r in results) for k in first.observed_max},
        values={k: torch.cat([r.values[k] for r in results]) for k in first.values},
    )


def simulate_on_cluster(model: IntegerModel, images: torch.Tensor, backend: str, cluster: str,
                        batch_size: int = 8) -> SimResult:
    """``images`` split into batches across the cluster; the merged result."""
    parts = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    done = dict(map_batches(model, parts, backend, cluster))
    return concat([done[i] for i in range(len(parts))])
