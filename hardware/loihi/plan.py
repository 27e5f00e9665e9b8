"""The Loihi 2 network as a typed plan: one spec per process, the links between their ports.

A spec holds what the chip needs to know of a process (its class, its formats' values, where it
runs) in plain data, without importing Lava; ``lava.instantiate`` turns each spec type into its
Lava process and model, the audit checks each spec type by its own rule, and ``resources``
counts neurons and synapses from them. Neuro-core specs name Lava library processes; the others
are processes of ours on embedded cores or the host.

``Spec.params()`` are the process constructor's keyword arguments (the fields of the spec type);
the base fields (``node``, ``synops``, ``work``, ``neurons``, bounds) are the plan's bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from ...errors import LensNetDeployError

NEURO_CORE, EMBEDDED, HOST = "neuro-core", "embedded", "host"


@dataclass(kw_only=True)
class Spec:
    """One process. ``synops``/``work``: synaptic operations, or embedded/host operations, per
    image at full activity; ``in_bound``: static bound of |a_in| (neurons) or of |a_out|
    (synapses); ``out_bound``: of the |values| a process of ours sends (an int, or per channel);
    ``constant``: an always-on source's value every step."""

    name: str
    node: str = ""
    synops: int = 0
    work: int = 0
    neurons: int = 0
    in_bound: int = 0
    out_bound: Any = 0
    constant: int | None = None

    placement: ClassVar[str] = NEURO_CORE
    lava_class: ClassVar[str] = ""  # the class it becomes (for network.json and the docs)

    @property
    def library(self) -> bool:
        return self.lava_class.startswith("lava.proc.")

    @property
    def kind(self) -> str:
        return self.lava_class.rpartition(".")[2]

    def params(self) -> dict[str, Any]:
        """The process constructor's keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _BASE}

    @property
    def size(self) -> int:
        """Neurons (or output rows) of the process."""
        shape = getattr(self, "shape", (1,))
        return int(np.prod(shape))


_BASE = {f.name for f in fields(Spec)}


# --- neuro-core processes: Lava's library --------------------------------------------------------
@dataclass(kw_only=True)
class NeuronSpec(Spec):
    shape: tuple[int, ...]
    vth: int = 0


@dataclass(kw_only=True)
class LIFResetSpec(NeuronSpec):
    """Memoryless LIF planes (``reset_interval = 1``, ``du = dv = 0``): ``v = (a_in << 6) + bias``."""

    bias_mant: Any = 0
    bias_exp: Any = 0
    du: int = 0
    dv: int = 0
    reset_interval: int = 1
    reset_offset: int = 0
    lava_class: ClassVar[str] = "lava.proc.lif.process.LIFReset"




@dataclass(kw_only=True)
class RingSourceSpec(Spec):
    """Lava's ``RingBuffer`` on the host: a stream's input spikes (given when it runs), or, with a
    ``pattern``, the on/off cycle of the always-on source of bias synapses (``constant``: 1)."""

    shape: tuple[int, ...]
    pattern: Any = None
    placement: ClassVar[str] = HOST
    lava_class: ClassVar[str] = "lava.proc.io.source.RingBuffer"


@dataclass(kw_only=True)
class CubaLIFSpec(LIFResetSpec):
    """LIF neurons with state (a NIR graph's LIF, CubaLIF, IF, LI, I: integer semantics v4), run by
    Lava's own ``PyLifResetModelBitAcc``: decays ``du``/``dv`` (12 bits), reset every
    ``reset_interval`` steps at ``reset_offset`` (one sample of a stream)."""


@dataclass(kw_only=True)
class GradedVecSpec(NeuronSpec):
    """An exact relay of a graded value (``vth = 0``)."""

    lava_class: ClassVar[str] = "lava.proc.graded.process.GradedVec"


@dataclass(kw_only=True)
class SynapseSpec(Spec):
    weight_exp: int = 0
    num_weight_bits: int = 8
    num_message_bits: int = 0


@dataclass(kw_only=True)
class SparseSpec(SynapseSpec):
    weights: Any  # scipy CSR, int16 (int32 where a value does not fit: the audit reports it)
    lava_class: ClassVar[str] = "lava.proc.sparse.process.Sparse"

    @property
    def size(self) -> int:
        return int(self.weights.shape[0])

    def stored(self) -> np.ndarray:
        """The stored weights (a sparse matrix's explicit entries: its zeros are no synapses)."""
        return np.asarray(self.weights.data, dtype=np.int64)


@dataclass(kw_only=True)
class DelaySparseSpec(SparseSpec):
    delays: int = 0  # one delay for every synapse
    max_delay: int = 0
    lava_class: ClassVar[str] = "lava.proc.sparse.process.DelaySparse"


@dataclass(kw_only=True)
class ConvSpec(SynapseSpec):
    """Lava's layout: weight (O, kx, ky, I/groups), input (X, Y, C)."""

    weight: np.ndarray
    input_shape: tuple[int, int, int]
    padding: tuple[int, int]
    stride: tuple[int, int]
    groups: int
    lava_class: ClassVar[str] = "lava.proc.conv.process.Conv"

    def stored(self) -> np.ndarray:
        return np.asarray(self.weight, dtype=np.int64)


# --- processes of ours: embedded cores and the host ----------------------------------------------
@dataclass(kw_only=True)
class OwnSpec(Spec):
    shape: tuple[int, ...] = ()
    inputs: list[dict] = field(default_factory=list)  # one port per operand part (``lower.own``)
    placement: ClassVar[str] = EMBEDDED


@dataclass(kw_only=True)
class SumPoolSpec(OwnSpec):
    in_shape: tuple[int, ...] = ()


@dataclass(kw_only=True)
class AttentionSpec(OwnSpec):
    heads: int = 1


@dataclass(kw_only=True)
class SigmoidTableSpec(OwnSpec):
    z_shift: Any = None
    z_lo: Any = None
    z_hi: Any = None
    lut: Any = None


@dataclass(kw_only=True)
class GateSpec(OwnSpec):
    mult: Any = None
    r: int = 0


@dataclass(kw_only=True)
class WideSpikeSpec(Spec):
    """The multi-spike count of a 64-bit value (after global pooling and attention)."""

    shape: tuple[int, ...]
    theta: np.ndarray
    placement: ClassVar[str] = EMBEDDED
    lava_class: ClassVar[str] = "lensnet_deploy.WideSpike"


@dataclass(kw_only=True)
class BilinearSpec(OwnSpec):
    factor: int = 1
    placement: ClassVar[str] = HOST


@dataclass(kw_only=True)
class PixelSourceSpec(Spec):
    shape: tuple[int, ...]
    placement: ClassVar[str] = HOST
    lava_class: ClassVar[str] = "lensnet_deploy.PixelSource"


@dataclass(kw_only=True)
class ReadoutSpec(Spec):
    inputs: list[dict] = field(default_factory=list)  # node, part, channels, planes, offset, bias per port
    placement: ClassVar[str] = HOST
    lava_class: ClassVar[str] = "lensnet_deploy.Readout"


for _own in (SumPoolSpec, AttentionSpec, SigmoidTableSpec, GateSpec, BilinearSpec):
    _own.lava_class = f"lensnet_deploy.{_own.__name__.removesuffix('Spec')}"


@dataclass
class Link:
    """``src.src_port`` → ``dst.dst_port``; ``via``: what adapts the source port (Lava's virtual
    ports): ``("flatten",)``, ``("reshape", shape)``, ``("transpose", axes)``."""

    src: str
    src_port: str
    dst: str
    dst_port: str
    via: tuple = ()


@dataclass
class NetworkPlan:
    procs: dict[str, Spec] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    observed: dict[str, list] = field(default_factory=dict)  # IR node → parts the readout records
    outputs: list[str] = field(default_factory=list)
    depth: int = 0  # the deepest offset: steps from an image's first to its last value
    input_shape: tuple[int, ...] = ()
    target: str = ""
    real_scales: list[np.ndarray] = field(default_factory=list)  # per output, the integers' real unit
    spike_nodes: set[str] = field(default_factory=set)  # IR nodes whose values are spike counts
    # a graph with time: steps per sample, the stream's period, each layer's processes and neurons
    steps: int = 0
    period: int = 0
    groups: dict[str, list] = field(default_factory=dict)  # layer → [[process, neuron indices], …]

    @property
    def placement(self) -> dict[str, str]:
        return {name: p.placement for name, p in self.procs.items()}

    @property
    def readout(self) -> ReadoutSpec:
        return self.procs["readout"]  # type: ignore[return-value]

    @property
    def neuro_core_synop_share(self) -> float:
        """Share of the operations per image (synaptic operations of neuro-core synapses, the
        multiply-accumulates of embedded and host work) done on neuro-cores."""
        core = sum(p.synops for p in self.procs.values() if p.placement == NEURO_CORE)
        other = sum(p.work for p in self.procs.values() if p.placement != NEURO_CORE)
        return core / max(1, core + other)

    def describe(self) -> dict[str, Any]:
        """A readable, JSON-ready description: processes, shapes, parameters, connections."""
        return {"target": self.target, "depth": self.depth, "input_shape": list(self.input_shape),
                "processes": [{"name": p.name, "class": p.lava_class, "placement": p.placement, "node": p.node,
                               "neurons": p.neurons, "synops_per_image": p.synops, "work_per_image": p.work,
                               "params": _plain(p.params())} for p in self.procs.values()],
                "connections": [{"from": f"{x.src}.{x.src_port}", "to": f"{x.dst}.{x.dst_port}",
                                 "via": _plain(list(x.via))} for x in self.links]}


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist() if v.size <= 64 else {"shape": list(v.shape), "dtype": str(v.dtype),
                                                "min": int(v.min(initial=0)), "max": int(v.max(initial=0))}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if hasattr(v, "shape") and hasattr(v, "nnz"):  # scipy sparse
        return {"sparse": list(v.shape), "nnz": int(v.nnz)}
    return v


# --- constructors shared by the lowering and the timing pass ----------------------------------------
def narrow(weights: np.ndarray) -> np.ndarray:
    """Weights as int16 (2·W mixed-sign 8-bit mantissas, identities: two bytes each, not eight);
    int32 when a value does not fit, so that the design-rule audit still sees and reports it."""
    w = np.asarray(weights)
    fits = w.size == 0 or (w.min() >= np.iinfo(np.int16).min and w.max() <= np.iinfo(np.int16).max)
    return w.astype(np.int16 if fits else np.int32)


def sparse_spec(cls: type[SparseSpec], name: str, matrix, part, weight_exp: int = 0,
                **extra) -> SparseSpec:
    matrix = matrix.tocsr()
    return cls(name=name, weights=matrix.astype(narrow(matrix.data).dtype), weight_exp=weight_exp,
               num_message_bits=part.bits if part is not None and part.graded else 0, **extra)


def relay_spec(name: str, part, shape: tuple, node: str, in_bound: int) -> Spec:
    """A neuron that relays ``part`` exactly: a GradedVec for graded values, else a LIF neuron that
    fires on any positive input (an exact relay of binary planes, and an OR)."""
    neurons = int(np.prod(shape))
    if part.graded:
        return GradedVecSpec(name=name, shape=shape, node=node, neurons=neurons, in_bound=in_bound)
    return LIFResetSpec(name=name, shape=shape, node=node, neurons=neurons, in_bound=in_bound)


# --- the plan as files: a build folder's plan.json (structure) and plan.npz (arrays) ---------------
SPEC_TYPES: dict[str, type[Spec]] = {cls.__name__: cls for cls in (
    LIFResetSpec, CubaLIFSpec, RingSourceSpec, GradedVecSpec, SparseSpec, DelaySparseSpec, ConvSpec, SumPoolSpec,
    AttentionSpec, SigmoidTableSpec, GateSpec, WideSpikeSpec, BilinearSpec, PixelSourceSpec, ReadoutSpec)}


def _encode(v: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(v, np.ndarray):
        key = f"a{len(arrays)}"
        if 0 in v.strides and v.size > 1:  # a broadcast view: keep its compact source
            arrays[key] = v[tuple(slice(0, 1) if st == 0 else slice(None) for st in v.strides)].copy()
            return {"array": key, "broadcast": list(v.shape)}
        arrays[key] = v
        return {"array": key}
    if hasattr(v, "nnz") and hasattr(v, "indptr"):  # scipy CSR
        key = f"a{len(arrays)}"
        arrays[key + "d"], arrays[key + "i"], arrays[key + "p"] = v.data, v.indices, v.indptr
        return {"csr": key, "shape": list(v.shape)}
    if isinstance(v, dict):
        return {"dict": {k: _encode(x, arrays) for k, x in v.items()}}
    if isinstance(v, tuple):
        return {"tuple": [_encode(x, arrays) for x in v]}
    if isinstance(v, list):
        return [_encode(x, arrays) for x in v]
    if isinstance(v, set):
        return {"set": sorted(v)}
    if isinstance(v, np.generic):
        return v.item()
    return v


def _decode(v: Any, arrays) -> Any:
    if isinstance(v, list):
        return [_decode(x, arrays) for x in v]
    if not isinstance(v, dict):
        return v
    if "array" in v:
        a = arrays[v["array"]]
        return np.broadcast_to(a, tuple(v["broadcast"])) if "broadcast" in v else a
    if "csr" in v:
        from scipy.sparse import csr_matrix

        k = v["csr"]
        return csr_matrix((arrays[k + "d"], arrays[k + "i"], arrays[k + "p"]), shape=tuple(v["shape"]))
    if "dict" in v:
        return {k: _decode(x, arrays) for k, x in v["dict"].items()}
    if "tuple" in v:
        return tuple(_decode(x, arrays) for x in v["tuple"])
    if "set" in v:
        return set(v["set"])
    raise LensNetDeployError(f"unknown plan entry {sorted(v)}")


def plan_files(plan: NetworkPlan) -> tuple[str, bytes]:
    """The plan as (JSON text, npz bytes): every spec with its type and fields, every link."""
    import io
    import json
    import zipfile

    arrays: dict[str, np.ndarray] = {}
    doc = {"format": 1, "target": plan.target, "depth": plan.depth, "input_shape": list(plan.input_shape),
           "outputs": plan.outputs, "spike_nodes": sorted(plan.spike_nodes),
           "steps": plan.steps, "period": plan.period, "groups": _encode(plan.groups, arrays),
           "real_scales": _encode([np.asarray(s) for s in plan.real_scales], arrays),
           "procs": [{"type": type(p).__name__, "fields": _encode({f.name: getattr(p, f.name) for f in fields(p)},
                                                                   arrays)} for p in plan.procs.values()],
           "links": [[x.src, x.src_port, x.dst, x.dst_port, _encode(x.via, arrays)] for x in plan.links]}
    buf = io.BytesIO()  # an .npz (np.load reads it) at zlib level 1: 5x faster than savez_compressed's level
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for key, a in arrays.items():
            with z.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False)
    return json.dumps(doc), buf.getvalue()


def read_plan(text: str, npz) -> NetworkPlan:
    """A plan from ``plan_files``' output (``npz``: a path or file); ``LensNetDeployError`` on an
    unknown format or process type."""
    import json

    doc = json.loads(text)
    if doc.get("format") != 1:
        raise LensNetDeployError(f"unknown plan format {doc.get('format')!r}")
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    plan = NetworkPlan(target=doc["target"], depth=int(doc["depth"]), input_shape=tuple(doc["input_shape"]),
                       outputs=list(doc["outputs"]), spike_nodes=set(doc["spike_nodes"]),
                       real_scales=_decode(doc["real_scales"], arrays), steps=int(doc.get("steps", 0)),
                       period=int(doc.get("period", 0)), groups=_decode(doc.get("groups", {"dict": {}}), arrays))
    for entry in doc["procs"]:
        cls = SPEC_TYPES.get(entry["type"])
        if cls is None:
            raise LensNetDeployError(f"unknown process spec {entry['type']!r}")
        spec = cls(**_decode(entry["fields"], arrays))
        plan.procs[spec.name] = spec
    plan.links = [Link(s, sp, d, dp, _decode(via, arrays)) for s, sp, d, dp, via in doc["links"]]
    return plan
