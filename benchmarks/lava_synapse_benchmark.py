"""Convolutions in Lava: our fixed_pt process vs Lava's ``Conv`` vs ``conv_to_sparse`` + ``Sparse``.

Per layer (real layers of the zoo's lensnet-tiny, integer, at its native
128²): seconds per timestep of a source → synapse → bias process network,
after the first valid step, each route checked bit for bit against our
integer kernel; an identity network of the same output size gives the
per-step overhead. Then a whole model (lensnet-micro at 32²) with each
route: seconds per image, timesteps to settle, processes. Run on an idle
machine; every Lava process is an OS process.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import lensnet_deploy as ld
from lensnet_deploy.export.from_nir import from_nir
from lensnet_deploy.hardware.int_sim import simulate_int
from lensnet_deploy.hardware.lava_backend.kernels import conv as int_conv
from lensnet_deploy.hardware.lava_backend.processes import IntOp1, IntSource
from lensnet_deploy.hardware.lava_sim import _params, simulate_lava
from lensnet_deploy.hardware.lava_synapses import connect_synapse
from lensnet_deploy.model_zoo import VARIANTS, LensNet
from lensnet_deploy.model_zoo.random_weights import randomize_

ROUTES = ("own", "sparse", "conv")


def layer_network(route: str, node, src_shape, x: np.ndarray):
    params = _params(node.attrs)
    source = IntSource(data=x)
    if route == "own":
        sink = IntOp1(in_shapes=[src_shape], out_shape=node.shape, op="conv", params=params)
        source.out.connect(sink.in0)
    else:
        sink = IntOp1(in_shapes=[node.shape], out_shape=node.shape, op="bias", params=params)
        connect_synapse(route, node, src_shape, source.out, sink.in0)
    return source, sink


def time_route(route: str, node, src_shape, x: np.ndarray, steps: int) -> tuple[float, bool]:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    source, sink = layer_network(route, node, src_shape, x)
    try:
        source.run(condition=RunSteps(num_steps=2), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        t0 = time.perf_counter()
        source.run(condition=RunSteps(num_steps=steps))
        per_step = (time.perf_counter() - t0) / steps
        exact = np.array_equal(sink.value.get().astype(np.int64), int_conv(x, _params(node.attrs)))
    finally:
        source.stop()
    return per_step, exact


def overhead(shape, steps: int) -> float:
    """Seconds per step of a source → identity network sending the same number of values."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    source = IntSource(data=np.zeros(shape, np.int64))
    sink = IntOp1(in_shapes=[shape], out_shape=shape, op="identity", params={})
    source.out.connect(sink.in0)
    try:
        source.run(condition=RunSteps(num_steps=2), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        t0 = time.perf_counter()
        source.run(condition=RunSteps(num_steps=steps))
        return (time.perf_counter() - t0) / steps
    finally:
        source.stop()


def layers(args) -> None:
    model = ld.load_lensnet("lensnet-tiny")
    graph = from_nir(ld.quantize(ld.export_nir(model, (128, 128))))
    convs = graph.of_op("conv")
    depthwise = next(n for n in convs if n.attrs["groups"] > 1 and np.asarray(n.attrs["w_int"]).shape[-1] == 7)
    picks = [convs[0], graph.nodes["backbone.ConvBlock2_2.0.conv1"], graph.nodes["backbone.block4.0.attn.v_conv.0"],
             depthwise]
    rng = np.random.default_rng(0)
    print(f"per timestep, lensnet-tiny layers at 128² (best of {args.repeat}, {args.steps} steps each)")
    print(f"{'layer':44} {'shape':22} {'own':>9} {'Sparse':>9} {'Conv':>9}  {'overhead':>8}  exact")
    for node in picks:
        src = graph.nodes[node.inputs[0]]
        x = rng.integers(-124, 153, src.shape) if src.op == "input" else rng.integers(0, 5, src.shape)
        times, exact = {}, True
        for route in ROUTES:
            runs = [time_route(route, node, src.shape, x, args.steps) for _ in range(args.repeat)]
            times[route] = min(t for t, _ in runs)
            exact &= all(ok for _, ok in runs)
        base = min(overhead(node.shape, args.steps) for _ in range(args.repeat))
        w = np.asarray(node.attrs["w_int"]).shape
        shape = f"{src.shape[0]}→{node.shape[0]} k{w[-1]} g{node.attrs['groups']} {node.shape[1]}²"
        print(f"{node.name[:44]:44} {shape:22} " + " ".join(f"{1e3 * times[r]:7.1f}ms" for r in ROUTES)
              + f"  {1e3 * base:6.1f}ms  {exact}")


def whole_model(args) -> None:
    model = randomize_(LensNet(VARIANTS["lensnet-micro"]), seed=0).eval()
    q = from_nir(ld.quantize(ld.export_nir(model, (args.size, args.size))))
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    fast = simulate_int(q, x, fast=True)
    print(f"lensnet-micro at {args.size}², one image, whole model in Lava")
    for route in ROUTES:
        run = simulate_lava(q, x, synapses=route)
        same = all(np.array_equal(a, b[0].numpy()) for a, b in zip(run.raw, fast.raw))
        print(f"  {route:6}: {run.seconds:6.1f} s/image, {run.steps:3d} timesteps, {run.processes} processes, "
              f"bit-exact: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--size", type=int, default=32, help="input side of the whole-model run")
    parser.add_argument("--skip-model", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    layers(args)
    if not args.skip_model:
        whole_model(args)


if __name__ == "__main__":
    main()
