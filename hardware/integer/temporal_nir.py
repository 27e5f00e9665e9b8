"""Integer temporal models as NIR files, and back.

A layer is a ``CubaLIF`` node whose float parameters describe the same neuron (τ from the decays,
the threshold in real units) for other tools to read, and whose metadata ``lensnet.cuba`` holds
the integers this tool runs (du, dv, vth, bias mantissas and exponents, the voltage unit, the chip
offset, whether it spikes). A path is a ``Linear`` node of integer weights with metadata
``lensnet.synapse`` (weight exponent, extra delay); paths from the always-on neuron (bias
synapses) are a ``Linear`` fed by an ``Input`` node named ``__one__``. The graph metadata
``lensnet.temporal`` records the semantics version, dt, the method and the target.
Reading validates every integer against its width: one line naming the node and the value.
"""

from __future__ import annotations

import json

import nir
import numpy as np
from scipy import sparse

from ...errors import GraphError
from ..target.chips import load_target
from . import cuba
from .temporal import ONE, WEIGHT_MAX, Layer, Path, TemporalIntModel
from .validate import integers

KEY = "lensnet.temporal"
LAYER_KEY, PATH_KEY = "lensnet.cuba", "lensnet.synapse"
VERSION = "docs/integer_semantics.md v4 (neurons with state)"
MAX_DELAY = load_target("loihi2").max_delay  # DelaySparse
DENSE_FILE_LIMIT = 4_000_000  # a path of more entries is written as its stored entries (metadata)


def to_nir(model: TemporalIntModel) -> nir.NIRGraph:
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    for name, shape in model.inputs.items():  # flat: NIR's type check needs Linear's vectors (shapes in metadata)
        nodes[name] = nir.Input(input_type={"input": np.array([int(np.prod(shape))])})
    if any(p.source == ONE for layer in model.layers.values() for p in layer.paths):
        nodes[ONE] = nir.Input(input_type={"input": np.array([1])})
    for name, layer in model.layers.items():
        n = layer.size
        keep_v = (cuba.DECAY_UNITY - layer.dv) / cuba.DECAY_UNITY
        tau_mem = np.where(keep_v < 1, model.dt / np.maximum(1 - keep_v, 1e-12), np.inf)
        keep_u = (cuba.DECAY_UNITY - layer.du - cuba.DS_OFFSET) / cuba.DECAY_UNITY
        tau_syn = model.dt / np.maximum(1 - keep_u, 1e-12)
        theta = (layer.vth << cuba.ACT_SHIFT) * layer.scale
        node = nir.CubaLIF(tau_syn=tau_syn.reshape(n), tau_mem=tau_mem.reshape(n), r=np.ones(n),
                           v_leak=np.zeros(n), v_threshold=theta.reshape(n), w_in=np.ones(n))
        node.metadata = {LAYER_KEY: {"du": np.broadcast_to(layer.du, (n,)).astype(np.int64),
                                     "dv": np.broadcast_to(layer.dv, (n,)).astype(np.int64),
                                     "vth": int(layer.vth), "bias_mant": layer.bias_mant.astype(np.int64),
                                     "bias_exp": layer.bias_exp.astype(np.int64), "scale": layer.scale,
                                     "offset": int(layer.offset), "spiking": int(layer.spiking),
                                     "kind": layer.kind, "shape": np.array(layer.shape)}}
        nodes[name] = node
        for k, p in enumerate(layer.paths):
            syn = f"{name}.syn{k}".replace(".", "_")
            w = sparse.csr_matrix(p.weights, dtype=np.int64)
            fw = sparse.csr_matrix(p.float_weights, dtype=np.float64)
            meta = {"weight_exp": int(p.weight_exp), "delay": int(p.delay)}
            if w.shape[0] * w.shape[1] <= DENSE_FILE_LIMIT:  # a plain Linear other tools read
                lin = nir.Linear(weight=w.toarray().astype(np.float64))
                meta["float_weight"] = fw.toarray()
            else:  # a large sparse path (a convolution): its stored entries in the metadata
                lin = nir.Linear(weight=np.zeros((0, 0)))
                meta |= {"shape": np.array(w.shape), "indptr": w.indptr.astype(np.int64),
                         "indices": w.indices.astype(np.int64), "data": w.data.astype(np.int64)}
            lin.metadata = {PATH_KEY: meta}
            nodes[syn] = lin
            edges += [(p.source, syn), (syn, name)]
    for out, src in model.outputs.items():
        nodes[out] = nir.Output(output_type={"output": np.array([model.layers[src].size])})
        edges.append((src, out))
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    graph.metadata = {KEY: json.dumps({"semantics": VERSION, "dt": model.dt, "method": model.method,
                                       "target": "loihi2", "inputs": {k: list(v) for k, v in model.inputs.items()}})}
    return graph


def is_temporal_integer(graph: nir.NIRGraph) -> bool:
    return KEY in (graph.metadata or {})


def _int(node: str, key: str, value, lo: int, hi: int) -> np.ndarray:
    """``value`` read whole as integers (the one validator: no NaN, fraction or wrap) within lo..hi."""
    a = integers(f"node {node}: {key}", value)
    if a.size and (a.min() < lo or a.max() > hi):
        bad = int(a.min()) if a.min() < lo else int(a.max())
        raise GraphError(f"node {node}: {key} {bad} is outside {lo}..{hi}")
    return a


def _weights(syn: str, lin: nir.Linear, meta: dict, shape: tuple[int, int]
             ) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """A path's integer weights and the float ones they stand for: the Linear's matrix, or a large
    path's stored entries (``indptr``, ``indices``, ``data``) from the metadata."""
    if "indptr" in meta:
        got = tuple(int(s) for s in np.asarray(meta.get("shape", ())).reshape(-1))
        indptr = _int(syn, "indptr", meta["indptr"], 0, 1 << 40)
        indices = _int(syn, "indices", meta["indices"], 0, max(0, shape[1] - 1))
        data = _int(syn, "weight", meta["data"], -WEIGHT_MAX - 1, WEIGHT_MAX)
        if got != shape or indptr.size != shape[0] + 1 or indices.size != data.size or indptr[-1] != data.size \
                or (np.diff(indptr) < 0).any():
            raise GraphError(f"node {syn}: sparse weights of shape {got} do not form a {shape} matrix")
        w = sparse.csr_matrix((data, indices, indptr), shape=shape)
        return w, w.astype(np.float64) * 2.0 ** int(meta.get("weight_exp", 0))  # (the float weights stay out)
    w = _int(syn, "weight", lin.weight, -WEIGHT_MAX - 1, WEIGHT_MAX)
    if w.ndim != 2 or w.shape != shape:
        raise GraphError(f"node {syn}: weight of shape {tuple(w.shape)}, expected {shape}")
    return sparse.csr_matrix(w), sparse.csr_matrix(np.asarray(meta.get("float_weight", w), np.float64))


def from_nir(graph: nir.NIRGraph) -> TemporalIntModel:
    """The integer model of a file ``to_nir`` wrote; every integer checked against its width."""
    try:
        info = json.loads(graph.metadata[KEY])
        dt, method, declared = float(info["dt"]), str(info["method"]), dict(info["inputs"])
    except (KeyError, TypeError, ValueError) as err:
        raise GraphError(f"metadata {KEY} is damaged ({err})") from None
    inputs = {}
    for name, shape in declared.items():
        node = graph.nodes.get(name)
        if not isinstance(node, nir.Input):
            raise GraphError(f"input {name} of the metadata is no Input node")
        inputs[name] = tuple(int(s) for s in shape)
        if int(np.prod(inputs[name])) != int(np.prod(np.asarray(node.input_type["input"]))):
            raise GraphError(f"input {name}: metadata shape {inputs[name]} does not match the node")
    preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        if src not in graph.nodes or dst not in graph.nodes:
            raise GraphError(f"edge {src} -> {dst}: no such node")
        preds[dst].append(src)
    layers: dict[str, Layer] = {}
    for name, node in graph.nodes.items():  # every layer first (files list nodes by name), then its synapses
        if not isinstance(node, nir.CubaLIF):
            continue
        meta = (node.metadata or {}).get(LAYER_KEY)
        if not isinstance(meta, dict):
            raise GraphError(f"node {name}: a CubaLIF without its integers ({LAYER_KEY})")
        try:
            shape = tuple(int(s) for s in np.asarray(meta["shape"]).reshape(-1))
            n = int(np.prod(shape))
            du = _int(name, "du", meta["du"], 0, cuba.DECAY_UNITY - 1)
            dv = _int(name, "dv", meta["dv"], 0, cuba.DECAY_UNITY - 1)
            vth = int(_int(name, "vth", meta["vth"], 0, (1 << 17) - 1))
            mant = _int(name, "bias_mant", meta["bias_mant"], -4096, 4095)
            exp = _int(name, "bias_exp", meta["bias_exp"], 0, 7)
            scale = np.asarray(meta["scale"], np.float64)
            offset = int(_int(name, "offset", meta["offset"], 0, 1 << 20))
            spiking = bool(int(meta["spiking"]))
            kind = str(meta["kind"])
        except KeyError as err:
            raise GraphError(f"node {name}: {LAYER_KEY} has no {err}") from None
        for key, a in (("du", du), ("dv", dv), ("bias_mant", mant), ("bias_exp", exp), ("scale", scale)):
            if a.size != n:
                raise GraphError(f"node {name}: {key} has {a.size} values for {n} neurons")
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise GraphError(f"node {name}: scale must be finite and > 0")
        layers[name] = Layer(name, kind, shape, du, dv, vth, mant, exp, spiking, scale, offset)
    if not layers:
        raise GraphError("an integer temporal graph without layers")
    sizes = {**{k: int(np.prod(v)) for k, v in inputs.items()}, ONE: 1,
             **{k: layer.size for k, layer in layers.items()}}
    for name, layer in layers.items():
        for syn in preds[name]:
            lin = graph.nodes[syn]
            meta = (getattr(lin, "metadata", None) or {}).get(PATH_KEY)
            if not isinstance(lin, nir.Linear) or not isinstance(meta, dict) or len(preds[syn]) != 1:
                raise GraphError(f"node {name}: its input {syn} is not a synapse of this format")
            (source,) = preds[syn]
            if source not in sizes:
                raise GraphError(f"node {syn}: source {source} is neither an input nor a layer")
            w, fw = _weights(syn, lin, meta, (layer.size, sizes[source]))
            e = int(_int(syn, "weight_exp", meta.get("weight_exp"), -7, 8))
            d = int(_int(syn, "delay", meta.get("delay"), 0, MAX_DELAY))
            layer.paths.append(Path(source, w, e, d, fw))
    outputs = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Output):
            (src,) = preds[name] or [None]
            if src not in layers:
                raise GraphError(f"output {name} reads no layer")
            outputs[name] = src
    return TemporalIntModel(inputs, layers, outputs, dt, method)
