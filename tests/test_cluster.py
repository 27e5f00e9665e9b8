"""Many images on a Ray cluster (lensnet_deploy.cluster): equal to one process, faults, errors."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import DATASETS, SAMPLES

import lensnet_deploy as L
from lensnet_deploy.cluster import ClusterError, ClusterSpec, map_batches, parse_cluster
from lensnet_deploy.datasets import list_images, load_images
from lensnet_deploy.export import write_nir

EXE = shutil.which("lensnet-deploy") or str(Path(sys.executable).with_name("lensnet-deploy"))


def _real_images(count: int) -> list[Path]:
    folder = DATASETS / "ORSSD" / "test-images"
    files = list_images(folder if folder.exists() else SAMPLES / "Image")
    return [files[i % len(files)] for i in range(count)] if len(files) < count else files[:count]


@pytest.fixture(scope="module")
def micro_q(micro_model):
    x = load_images(_real_images(8), (32, 32))
    return L.prepare(L.quantize(L.export_nir(micro_model, (32, 32)), x)), x


def test_cluster_specs():
    assert parse_cluster("local:3") == ClusterSpec(workers=3)
    assert parse_cluster("local").workers == (os.cpu_count() or 1)
    assert parse_cluster("ray://head:10001") == ClusterSpec(address="ray://head:10001")
    for bad in ("local:0", "local:x", ""):
        with pytest.raises(ClusterError, match="local:N|--cluster"):
            parse_cluster(bad)


@pytest.mark.slow
def test_lava_on_two_workers_equals_the_fast_simulator(micro_q):
    """8 real images, batches of 4 on 2 workers each building the Lava network once. Slow (about
    2 min on 2 cores): the default run checks the same path through the CLI, maps byte for byte."""
    q, x = micro_q
    fast = q.fast(x)
    run = L.simulate(q, x, backend="lava", cluster="local:2", batch_size=4)
    assert all(torch.equal(a, b) for a, b in zip(run.raw, fast.raw))
    assert run.raw[0].shape[0] == 8
    assert all(torch.equal(run.spike_counts[k], fast.spike_counts[k]) for k in fast.spike_counts)


def _ray_workers() -> list[int]:
    """PIDs of our Ray actors (their process title is ray::_Worker…)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::_Worker"):
                pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_run_has_its_batch_retried(micro_q, caplog):
    q, x = micro_q
    parts = [x[i:i + 1] for i in range(len(x))]
    killed: list[int] = []

    def kill_one(index, result):
        if not killed:
            victims = _ray_workers()
            assert victims  # the second worker may still be starting
            os.kill(victims[0], signal.SIGKILL)
            killed.append(victims[0])

    with caplog.at_level(logging.WARNING, logger="lensnet_deploy.cluster"):
        done = list(map_batches(q, parts, "fast", "local:2", on_done=kill_one))
    indexes = [i for i, _ in done]
    assert sorted(indexes) == list(range(8))  # every batch once
    fast = q.fast(x)
    for i, result in done:
        assert torch.equal(result.raw[0], fast.raw[0][i:i + 1])
    assert killed and any("died" in r.getMessage() for r in caplog.records)


def _cli(*args, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_the_cli_on_a_local_cluster_writes_the_maps_of_one_process_and_resumes(tmp_path, micro_model):
    images = tmp_path / "images"
    images.mkdir()
    for src in _real_images(4):
        (images / src.name).write_bytes(src.read_bytes())
    ckpt = L.save_lensnet(micro_model, tmp_path / "micro.safetensors", "lensnet-micro")
    assert _cli("export", ckpt, "--input-size", 32, 32, "-o", tmp_path / "m.nir").returncode == 0
    assert _cli("quantize", tmp_path / "m.nir", "--calib", images, "-o", tmp_path / "m.q.nir").returncode == 0
    one = _cli("simulate", tmp_path / "m.q.nir", "--images", images, "--out", tmp_path / "one")
    many = _cli("simulate", tmp_path / "m.q.nir", "--images", images, "--out", tmp_path / "many",
                "--backend", "lava", "--cluster", "local:2", "--batch-size", 2)
    assert one.returncode == 0 and many.returncode == 0, many.stderr[-2000:]
    assert "wrote 4 saliency maps" in many.stdout and "cluster local:2" in many.stdout
    names = sorted(p.name for p in (tmp_path / "one").glob("*.png"))
    assert len(names) == 4
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes()
    # a rerun into the same folder skips what the same model wrote
    (tmp_path / "many" / names[0]).unlink()
    again = _cli("simulate", tmp_path / "m.q.nir", "--images", images, "--out", tmp_path / "many",
                 "--cluster", "local:2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "wrote 1 saliency maps" in again.stdout and "3 already there" in again.stdout
    assert (tmp_path / "one" / names[0]).read_bytes() == (tmp_path / "many" / names[0]).read_bytes()


def test_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path, micro_q):
    q, _ = micro_q
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    graph = tmp_path / "q.nir"
    write_nir(q.nir, graph)
    run = _cli("simulate", graph, "--images", SAMPLES / "Image", "--out", tmp_path / "o",
               "--cluster", f"127.0.0.1:{port}", timeout=120)
    assert run.returncode == 2
    line = f"lensnet-deploy simulate: error: cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused)"
    assert run.stderr.strip().splitlines() == [line]


def test_the_cli_joins_a_running_ray_cluster_by_its_address(tmp_path, micro_q):
    """`ray start --head` (what a user's cluster is), then `--cluster HOST:PORT`: the maps of one process."""
    q, x = micro_q
    ray = Path(EXE).with_name("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = subprocess.run([str(ray), "start", "--head", "--port", str(port), "--num-cpus", "2",
                            "--include-dashboard", "false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=180, env=env)
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        graph = tmp_path / "q.nir"
        write_nir(q.nir, graph)
        images = tmp_path / "images"
        images.mkdir()
        for src in _real_images(4):
            (images / src.name).write_bytes(src.read_bytes())
        one = _cli("simulate", graph, "--images", images, "--out", tmp_path / "one")
        joined = _cli("simulate", graph, "--images", images, "--out", tmp_path / "joined",
                      "--cluster", f"127.0.0.1:{port}", "--batch-size", 2, timeout=300)
        assert one.returncode == 0 and joined.returncode == 0, joined.stderr[-2000:]
        names = sorted(p.name for p in (tmp_path / "one").glob("*.png"))
        assert len(names) == 4
        assert all((tmp_path / "one" / n).read_bytes() == (tmp_path / "joined" / n).read_bytes() for n in names)
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, timeout=120, env=env)


def test_a_server_that_is_not_ray_is_one_line_and_exit_2_in_seconds(tmp_path, micro_q):
    """Ray would retry a non-Ray server for minutes, logging warnings; we ask it the gRPC preface first."""
    q, _ = micro_q
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        graph = tmp_path / "q.nir"
        write_nir(q.nir, graph)
        t0 = time.monotonic()
        run = _cli("simulate", graph, "--images", SAMPLES / "Image", "--out", tmp_path / "o",
                   "--cluster", f"127.0.0.1:{port}", timeout=120)
    assert run.returncode == 2 and time.monotonic() - t0 < 60
    assert run.stderr.strip().splitlines() == [
        f"lensnet-deploy simulate: error: 127.0.0.1:{port} answers but is not a Ray cluster (no gRPC server "
        "there: give the head's GCS port, 6379 by default, or ray://HOST:10001)"]


def test_ray_missing_is_one_clear_error(micro_q, monkeypatch):
    q, x = micro_q
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if absent
    with pytest.raises(ClusterError, match="Ray is not usable here .*run without --cluster"):
        L.simulate(q, x, cluster="local:2")


def test_run_on_a_local_cluster_gives_the_maps_and_report_of_one_process(tmp_path, micro_model):
    """``run --cluster local:2``: the integer maps equal a one-process run byte for byte, and the
    summary says where they ran."""
    import json

    ckpt = L.save_lensnet(micro_model, tmp_path / "micro.safetensors", "lensnet-micro")
    common = [ckpt, "--images", SAMPLES / "Image", "--gt", SAMPLES / "GT"]
    one = _cli("run", *common, "-o", tmp_path / "one")
    many = _cli("run", *common, "-o", tmp_path / "many", "--cluster", "local:2")
    assert one.returncode == 0 and many.returncode == 0, many.stderr[-2000:]
    assert "integer simulation (fast, cluster local:2)" in many.stdout
    names = sorted(p.name for p in (tmp_path / "one" / "maps" / "integer").glob("*.png"))
    assert len(names) == 12
    for name in names:
        assert (tmp_path / "one" / "maps" / "integer" / name).read_bytes() == \
            (tmp_path / "many" / "maps" / "integer" / name).read_bytes()
    summary = json.loads((tmp_path / "many" / "summary.json").read_text())
    assert summary["cluster"] == "local:2" and (tmp_path / "many" / "report.html").exists()
