"""The Loihi 2 network of an integer graph, as a plan: every process with its class, placement,
parameters and connections, in plain data (no Lava import).

What runs where (docs/lava.md):

- neuro-cores, Lava's library processes only: ``Conv`` and ``Sparse``/``DelaySparse`` synapses,
  memoryless ``LIFReset`` neurons (a multi-spike neuron of count 0..D is D binary planes;
  thresholds as one ``vth`` per process plus per-neuron bias offsets, ``loihi.lif_layout``),
  ``GradedVec`` relays (``vth = 0``: an exact relay of a 24-bit value) for residual streams and
  head logits, always-on neurons whose synapses deliver biases the neurons' own bias cannot hold;
- embedded cores, processes of ours (one per operation, typed Vars): global sum pooling, the
  attention product, spikes on those wide values, the sigmoid table, the gate;
- the host: the pixel source, the bilinear head resize, the readout.

Every synapse takes one step; neurons and our processes none. The plan balances delays
(``DelaySparse``, or a delayed relay before a ``Conv``) so that every join sees one image per
step: the network takes a new image every step (a pipeline), image ``i`` reaching a node at
step ``i + offset``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DesignRuleError, InternalError
from ..export import ops as O
from ..export.ir import Graph, Node
from ..normalization import PIXEL_MAGNITUDE
from . import ops as I
from .loihi import LifLayout, bias_digits, pre_shift_layout, weight_format
from .semantics import count_bits
from .targets import Target

LIBRARY = {"Conv": "lava.proc.conv.process.Conv", "Sparse": "lava.proc.sparse.process.Sparse",
           "DelaySparse": "lava.proc.sparse.process.DelaySparse", "LIFReset": "lava.proc.lif.process.LIFReset",
           "GradedVec": "lava.proc.graded.process.GradedVec"}
OWN = {"PixelSource": "host", "Readout": "host", "Bilinear": "host", "SumPool": "embedded", "WideSpike": "embedded",
       "Attention": "embedded", "SigmoidTable": "embedded", "Gate": "embedded"}
WARMUP = 3  # steps before the first image: the constant bias inputs are complete from step 3


@dataclass
class Proc:
    """One process: its class (``LIBRARY`` or ours), placement, constructor parameters and the
    IR node it serves; ``synops``/``work``: synaptic operations or embedded/host operations per
    image at full activity."""

    name: str
    kind: str
    placement: str
    params: dict[str, Any]
    node: str = ""
    synops: int = 0
    work: int = 0
    neurons: int = 0
    in_bound: int = 0  # neurons: static bound of |a_in|; synapses: of |a_out|
    out_bound: Any = 0  # our processes: static bound of the |values| they send (an int, or per channel)
    constant: int | None = None  # an always-on source: the value it sends every step

    @property
    def library(self) -> bool:
        return self.kind in LIBRARY


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
class Part:
    """A neuron output carrying (part of) an IR node's value: ``channels`` of the value; planes
    (``D`` binary rows per channel, channel-major) or graded integers (``D = 1``); image ``i``
    arrives at step ``i + offset``; ``bias`` per channel completes a relay's value."""

    proc: str
    port: str
    channels: np.ndarray
    D: int
    graded: bool
    offset: int
    shape: tuple[int, ...]
    bound: int  # static bound of |message|
    bias: np.ndarray | None = None

    @property
    def bits(self) -> int:
        """Payload bits of its messages (0: binary spikes)."""
        return 0 if not self.graded else max(1, int(self.bound).bit_length() + 1)


@dataclass
class Recipe:
    """A synaptic contribution to a membrane: a convolution of a node's input, or an identity
    from a graded part."""

    kind: str  # "conv" | "identity"
    node: str = ""  # the IntConv node (conv recipes)
    part: Part | None = None  # the source (identity recipes)


@dataclass
class NetworkPlan:
    procs: dict[str, Proc] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    observed: dict[str, list[Part]] = field(default_factory=dict)  # IR node → parts the readout records
    outputs: list[str] = field(default_factory=list)
    depth: int = 0  # the deepest offset: steps from an image's first to its last value
    input_shape: tuple[int, ...] = ()
    target: str = ""

    @property
    def placement(self) -> dict[str, str]:
        return {name: p.placement for name, p in self.procs.items()}

    @property
    def neuro_core_synop_share(self) -> float:
        """Share of the operations per image (synaptic operations of neuro-core synapses, the
        multiply-accumulates of embedded and host work) done on neuro-cores."""
        core = sum(p.synops for p in self.procs.values() if p.placement == "neuro-core")
        other = sum(p.work for p in self.procs.values() if p.placement != "neuro-core")
        return core / max(1, core + other)

    def describe(self) -> dict[str, Any]:
        """A readable, JSON-ready description: processes, shapes, parameters, connections."""
        def plain(v):
            if isinstance(v, np.ndarray):
                return v.tolist() if v.size <= 64 else {"shape": list(v.shape), "dtype": str(v.dtype),
                                                        "min": int(v.min(initial=0)), "max": int(v.max(initial=0))}
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            if isinstance(v, np.generic):
                return v.item()
            if hasattr(v, "shape") and hasattr(v, "nnz"):  # scipy sparse
                return {"sparse": list(v.shape), "nnz": int(v.nnz)}
            return v

        return {"target": self.target, "depth": self.depth, "input_shape": list(self.input_shape),
                "processes": [{"name": p.name, "class": LIBRARY.get(p.kind, f"lensnet_deploy.{p.kind}"),
                               "placement": p.placement, "node": p.node, "neurons": p.neurons,
                               "synops_per_image": p.synops, "work_per_image": p.work,
                               "params": plain(p.params)} for p in self.procs.values()],
                "connections": [{"from": f"{x.src}.{x.src_port}", "to": f"{x.dst}.{x.dst_port}",
                                 "via": plain(list(x.via))} for x in self.links]}

    def to_json(self) -> str:
        return json.dumps(self.describe(), indent=1)


def narrow(weights: np.ndarray) -> np.ndarray:
    """Weights as int16 (2·W mixed-sign 8-bit mantissas, identities: two bytes each, not eight);
    int32 when a value does not fit, so that the design-rule audit still sees and reports it."""
    w = np.asarray(weights)
    fits = w.size == 0 or (w.min() >= np.iinfo(np.int16).min and w.max() <= np.iinfo(np.int16).max)
    return w.astype(np.int16 if fits else np.int32)


def channel_chunks(channels: int, limit: int) -> list[np.ndarray]:
    """Contiguous, nearly equal chunks of at most ``limit`` channels (Conv's int8 groups)."""
    n = -(-channels // limit)
    return [np.asarray(c) for c in np.array_split(np.arange(channels), n)]


def _lava_kernel(w: np.ndarray) -> np.ndarray:
    """Correlation weights (O, I, kh, kw) as Lava's convolution kernel (O, kx, ky, I): transposed, flipped."""
    return np.ascontiguousarray(np.asarray(w).transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])


class _Builder:
    def __init__(self, ir: Graph, target: Target) -> None:
        self.ir, self.t = ir, target
        self.plan = NetworkPlan(target=target.name)
        self.parts: dict[str, list[Part]] = {}
        self.delayed: dict[tuple[str, int], Part] = {}
        self.syn: dict[str, np.ndarray] = {}  # per membrane node: bound of its synaptic sum (no bias)
        self.bias: dict[str, np.ndarray] = {}  # per membrane node: its biases
        self.names: set[str] = set()
        self.consts: dict[int, Part] = {}

    # --- plumbing -------------------------------------------------------------------------------
    def add(self, proc: Proc) -> Proc:
        base, k = proc.name, 1
        while proc.name in self.plan.procs:
            k += 1
            proc.name = f"{base}#{k}"
        self.plan.procs[proc.name] = proc
        return proc

    def link(self, src: str, src_port: str, dst: str, dst_port: str, via: tuple = ()) -> None:
        self.plan.links.append(Link(src, src_port, dst, dst_port, via))

    def consumers(self, name: str) -> list[Node]:
        return self.ir.consumers(name)

    # --- bounds of membranes ----------------------------------------------------------------------
    def value_bound(self, name: str) -> np.ndarray:
        """Per channel, a static bound of |value| of a node's output (counts, pixels, membranes)."""
        n = self.ir.nodes[name]
        if isinstance(n.op, O.Input):
            return np.full(3, PIXEL_MAGNITUDE, dtype=np.int64)
        if isinstance(n.op, I.IntSpike):
            return np.full(n.shape[0], n.op.D, dtype=np.int64)
        if isinstance(n.op, O.MaxPool | O.Upsample):
            return self.value_bound(n.inputs[0])
        if isinstance(n.op, I.IntConv | O.Add | I.IntGate):
            return self.membrane(name)[0] + np.abs(self.membrane(name)[1])
        raise InternalError(f"no bound rule for {n.kind} node {name}")

    def membrane(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(bound of the synaptic sum, bias) of a convolution, join or gate."""
        if name not in self.syn:
            n = self.ir.nodes[name]
            if isinstance(n.op, I.IntConv):
                w = np.abs(n.op.weight).reshape(n.shape[0], -1).sum(axis=1)
                self.syn[name] = w * int(self.value_bound(n.inputs[0]).max())
                self.bias[name] = n.op.b_int.copy()
            elif isinstance(n.op, O.Add):
                self.syn[name] = sum(self.membrane(i)[0] for i in n.inputs)
                self.bias[name] = sum(self.membrane(i)[1] for i in n.inputs)
            elif isinstance(n.op, I.IntGate):
                top = 2 ** 12 * int(self.value_bound(n.inputs[1]).max()) * np.abs(n.op.mult)
                self.syn[name] = (top + (1 << (n.op.r - 1))) >> n.op.r
                self.bias[name] = np.zeros(n.shape[0], dtype=np.int64)
            else:
                raise InternalError(f"{n.kind} node {name} is no membrane")
        return self.syn[name], self.bias[name]

    # --- recipes: what sums into a membrane -----------------------------------------------------
    def passes_through(self, name: str) -> bool:
        """A convolution or join with one consumer, a spike or a join, needs no neuron of its own:
        its synapses go straight into that consumer's neurons."""
        users = self.consumers(name)
        return len(users) == 1 and isinstance(users[0].op, I.IntSpike | O.Add) and \
            isinstance(self.ir.nodes[name].op, I.IntConv | O.Add)

    def recipes(self, name: str) -> list[Recipe]:
        n = self.ir.nodes[name]
        if isinstance(n.op, I.IntConv) and self.passes_through(name):
            return [Recipe("conv", node=name)]
        if isinstance(n.op, O.Add) and self.passes_through(name):
            return [r for i in n.inputs for r in self.recipes(i)]
        return [Recipe("identity", part=p) for p in self.provider(name)]

    # --- providers: the neuron outputs of each node -------------------------------------------
    def provider(self, name: str) -> list[Part]:
        if name not in self.parts:
            n = self.ir.nodes[name]
            build = {O.Input: self.build_input, I.IntSpike: self.build_spike, O.MaxPool: self.build_maxpool,
                     O.Upsample: self.build_upsample, I.SumPool: self.build_sumpool,
                     I.IntAttention: self.build_attention, I.SigmoidTable: self.build_sigmoid,
                     I.IntGate: self.build_gate, I.IntBilinear: self.build_bilinear}.get(type(n.op))
            if build is None:
                if isinstance(n.op, I.IntConv | O.Add):
                    self.parts[name] = self.build_relay(n)
                else:
                    raise InternalError(f"no network rule for {n.kind} node {name}")
            else:
                self.parts[name] = build(n)
            if not isinstance(n.op, O.Input):
                self.plan.observed[name] = self.parts[name]
        return self.parts[name]

    def build_input(self, n: Node) -> list[Part]:
        proc = self.add(Proc("input", "PixelSource", "host", {"shape": n.shape}, n.name, out_bound=PIXEL_MAGNITUDE))
        self.plan.input_shape = n.shape
        return [Part(proc.name, "s_out", np.arange(3), 1, True, 0, n.shape, PIXEL_MAGNITUDE)]

    def build_relay(self, n: Node) -> list[Part]:
        """A membrane several consumers read (or one that is not a spike): a GradedVec relay of its
        synaptic sum; the bias travels with the part for its readers."""
        syn, bias = self.membrane(n.name)
        if syn.max(initial=0) > self.t.message_max:
            raise DesignRuleError(n.name, "message_bits", f"|value| ≤ {self.t.message_max:,}", int(syn.max()))
        proc = self.add(Proc(f"{n.name}/relay", "GradedVec", "neuro-core", {"shape": n.shape, "vth": 0}, n.name,
                             neurons=int(np.prod(n.shape)), in_bound=int(syn.max(initial=0))))
        offset = self.realize(self.recipes_of(n), proc, np.arange(n.shape[0]), 1, n.shape, None)
        return [Part(proc.name, "s_out", np.arange(n.shape[0]), 1, True, offset, n.shape, int(syn.max(initial=0)),
                     bias)]

    def recipes_of(self, n: Node) -> list[Recipe]:
        """The synaptic contributions that make up a membrane node itself."""
        if isinstance(n.op, I.IntConv):
            return [Recipe("conv", node=n.name)]
        return [r for i in n.inputs for r in self.recipes(i)]

    def build_spike(self, n: Node) -> list[Part]:
        op: I.IntSpike = n.op  # type: ignore[assignment]
        src = self.ir.nodes[n.inputs[0]]
        if isinstance(src.op, I.SumPool | I.IntAttention):
            return self.build_wide_spike(n)
        syn, bias = self.membrane(src.name)
        parts = []
        for chunk in self.chunks(n):
            found = pre_shift_layout(op.theta[chunk], bias[chunk], syn[chunk], self.t)
            if found is None:
                raise DesignRuleError(n.name, "lif_threshold", f"vth 0..{self.t.vth_max} with 13-bit offsets",
                                      "thresholds no LIF process holds")
            shift, layout = found
            whole = self.whole_membrane(n, src, chunk) if shift else None
            for k, group in enumerate(layout.groups):
                parts.append(self.build_lif(n, src, chunk, layout, group, k, whole, shift))
        return parts

    def whole_membrane(self, n: Node, src: Node, chunk: np.ndarray) -> Part:
        """The membrane of ``chunk``'s channels with its bias, whole in a GradedVec relay (for LIF
        neurons that read it pre-shifted)."""
        syn, bias = self.membrane(src.name)
        full = syn[chunk] + np.abs(bias[chunk])
        if full.max(initial=0) > self.t.message_max:
            raise DesignRuleError(n.name, "message_bits", f"|membrane| ≤ {self.t.message_max:,}", int(full.max()))
        shape = (len(chunk), *n.shape[1:])
        name = f"{n.name}/membrane" + ("" if len(chunk) == n.shape[0] else f"-{chunk[0]}")
        proc = self.add(Proc(name, "GradedVec", "neuro-core", {"shape": shape, "vth": 0}, n.name,
                             neurons=int(np.prod(shape)), in_bound=int(full.max(initial=0))))
        offset = self.realize(self.recipes(src.name), proc, chunk, 1, shape, bias[chunk])
        return Part(proc.name, "s_out", chunk, 1, True, offset, shape, int(full.max(initial=0)))

    def chunks(self, n: Node) -> list[np.ndarray]:
        """Channel chunks of a spike layer: one, unless a grouped convolution of more groups than
        Lava's Conv holds (int8) writes or reads it; then chunks that convolution follows."""
        users = [c for c in self.consumers(n.name) if isinstance(c.op, I.IntConv)]
        writers = self.stream_convs(n.inputs[0])
        if any(c.op.groups > self.t.conv_param_max for c in users + writers):  # type: ignore[attr-defined]
            return channel_chunks(n.shape[0], self.t.conv_param_max)
        return [np.arange(n.shape[0])]

    def stream_convs(self, name: str) -> list[Node]:
        """The convolutions whose synapses reach a membrane directly (through pass-through joins)."""
        n = self.ir.nodes[name]
        if isinstance(n.op, I.IntConv):
            return [n]
        if isinstance(n.op, O.Add):
            return [c for i in n.inputs if self.passes_through(i) or isinstance(self.ir.nodes[i].op, I.IntConv)
                    for c in self.stream_convs(i)]
        return []

    def build_lif(self, n: Node, src: Node, chunk: np.ndarray, layout: LifLayout, group, k: int,
                  whole: Part | None = None, shift: int = 0) -> Part:
        """LIF planes of ``group``'s rows, fed by the membrane's synapses, or (``whole``) by the
        relay that holds it, through an identity synapse that shifts right by ``shift``."""
        D = n.op.D  # type: ignore[attr-defined]
        rows_local = np.asarray(group.rows)
        channels = chunk[np.unique(rows_local // D)]
        shape = (len(rows_local), *n.shape[1:])
        name = n.name if len(layout.groups) == 1 and len(chunk) == n.shape[0] else f"{n.name}/part{k}-{chunk[0]}"
        # per row, broadcast over the pixels (a view: the neurons' values without a copy per neuron)
        bias_mant = np.broadcast_to(group.bias_mant.reshape(-1, 1, 1), shape)
        bias_exp = np.broadcast_to(group.bias_exp.reshape(-1, 1, 1), shape)
        proc = self.add(Proc(name, "LIFReset", "neuro-core",
                             {"shape": shape, "vth": int(group.vth), "bias_mant": bias_mant, "bias_exp": bias_exp,
                              "du": 0, "dv": 0, "reset_interval": 1, "reset_offset": 0}, n.name,
                             neurons=int(np.prod(shape)), in_bound=int(layout.input_bound[
                                 np.searchsorted(chunk, channels)].max(initial=0))))
        if whole is not None:
            self.identity_synapse(whole, proc, channels, D, shape, 0, shift)
            offset = whole.offset + 1
        else:
            offset = self.realize(self.recipes(src.name), proc, channels, D, shape,
                                  self.membrane(src.name)[1][channels] if layout.bias_synapses else None)
        return Part(proc.name, "s_out", channels, D, False, offset, shape, 1)

    def build_wide_spike(self, n: Node) -> list[Part]:
        (part,) = self.single(self.provider(n.inputs[0]), n)
        proc = self.add(Proc(n.name, "WideSpike", "embedded", {"shape": n.shape, "theta": n.op.theta},
                             n.name, work=int(np.prod(n.shape)) * n.op.D,  # type: ignore[attr-defined]
                             out_bound=n.op.D))  # type: ignore[attr-defined]
        self.link(part.proc, part.port, proc.name, "a_in")
        return [Part(proc.name, "s_out", np.arange(n.shape[0]), 1, True, part.offset, n.shape,
                     n.op.D)]  # type: ignore[attr-defined]

    def single(self, parts: list[Part], n: Node) -> list[Part]:
        if len(parts) != 1:
            raise InternalError(f"{n.kind} node {n.name} reads a value split into {len(parts)} processes")
        return parts

    def build_maxpool(self, n: Node) -> list[Part]:
        """max over H·W of a count = Σ_k [plane k fired anywhere]: per plane row, a Sparse sum of its
        H·W neurons into a LIF neuron that fires on any input (vth 0)."""
        out = []
        for i, part in enumerate(self.provider(n.inputs[0])):
            if part.graded:
                raise InternalError(f"max pool {n.name} reads graded counts")
            rows, h, w = part.shape
            from scipy.sparse import csr_matrix

            idx = np.arange(rows * h * w)
            matrix = csr_matrix((np.ones(idx.size, np.int64), (idx // (h * w), idx)), shape=(rows, rows * h * w))
            out.append(self.relay_through(n, part, matrix, (rows, 1, 1), f"{n.name}/part{i}" if i else n.name,
                                          part.D, h * w))
        return out

    def build_upsample(self, n: Node) -> list[Part]:
        f = n.op.factor  # type: ignore[attr-defined]
        out = []
        for i, part in enumerate(self.provider(n.inputs[0])):
            rows, h, w = part.shape
            from scipy.sparse import csr_matrix

            oy, ox = np.meshgrid(np.arange(h * f), np.arange(w * f), indexing="ij")
            dst = np.arange(rows)[:, None, None] * (h * f * w * f) + (oy * w * f + ox)[None]
            src = np.arange(rows)[:, None, None] * (h * w) + ((oy // f) * w + ox // f)[None]
            matrix = csr_matrix((np.ones(dst.size, np.int64), (dst.reshape(-1), src.reshape(-1))),
                                shape=(rows * h * f * w * f, rows * h * w))
            out.append(self.relay_through(n, part, matrix, (rows, h * f, w * f),
                                          f"{n.name}/part{i}" if i else n.name, part.D, part.bound))
        return out

    def relay_through(self, n: Node, part: Part, matrix, shape: tuple, name: str, D: int, in_bound: int) -> Part:
        """``part`` → Sparse(matrix) → a relay neuron of the same kind (LIF planes or GradedVec)."""
        syn = self.add(Proc(f"{name}/sparse", "Sparse", "neuro-core", self.sparse_params(matrix, part), n.name,
                            synops=int(matrix.nnz), in_bound=in_bound))
        self.link(part.proc, part.port, syn.name, "s_in", ("flatten",))
        if part.graded:
            relay = self.add(Proc(name, "GradedVec", "neuro-core", {"shape": shape, "vth": 0}, n.name,
                                  neurons=int(np.prod(shape)), in_bound=in_bound))
        else:
            relay = self.add(Proc(name, "LIFReset", "neuro-core", self.relay_lif(shape), n.name,
                                  neurons=int(np.prod(shape)), in_bound=in_bound))
        self.link(syn.name, "a_out", relay.name, "a_in", ("reshape", shape))
        return Part(relay.name, "s_out", part.channels, D, part.graded, part.offset + 1, shape,
                    in_bound if part.graded else 1, part.bias)

    @staticmethod
    def relay_lif(shape: tuple) -> dict[str, Any]:
        """A LIF neuron that fires on any positive input: an exact relay of binary planes and an OR."""
        return {"shape": shape, "vth": 0, "bias_mant": 0, "bias_exp": 0, "du": 0, "dv": 0, "reset_interval": 1,
                "reset_offset": 0}

    def sparse_params(self, matrix, part: Part | None, weight_exp: int = 0) -> dict[str, Any]:
        matrix = matrix.tocsr()
        return {"weights": matrix.astype(narrow(matrix.data).dtype), "weight_exp": weight_exp, "num_weight_bits": 8,
                "num_message_bits": part.bits if part is not None and part.graded else 0}

    def delay(self, part: Part, steps: int) -> Part:
        """``part`` arriving ``steps`` later: an identity DelaySparse into a relay neuron."""
        if steps <= 0:
            return part
        key = (part.proc, steps)
        if key not in self.delayed:
            from scipy.sparse import identity

            rows = int(np.prod(part.shape))
            d = min(steps - 1, self.t.max_delay)
            syn = self.add(Proc(f"{part.proc}/delay{steps}", "DelaySparse", "neuro-core",
                                {**self.sparse_params(identity(rows, dtype=np.int64, format="csr"), part),
                                 "delays": d, "max_delay": 0}, part.proc.split("/")[0], synops=rows,
                                in_bound=part.bound))
            self.link(part.proc, part.port, syn.name, "s_in", ("flatten",))
            kind, params = ("GradedVec", {"shape": part.shape, "vth": 0}) if part.graded else \
                ("LIFReset", self.relay_lif(part.shape))
            relay = self.add(Proc(f"{syn.name}/relay", kind, "neuro-core", params, syn.node,
                                  neurons=rows, in_bound=part.bound))
            self.link(syn.name, "a_out", relay.name, "a_in", ("reshape", part.shape))
            moved = Part(relay.name, "s_out", part.channels, part.D, part.graded, part.offset + 1 + d, part.shape,
                         part.bound, part.bias)
            self.delayed[key] = self.delay(moved, steps - 1 - d)
        return self.delayed[key]

    # --- synapses into a group of neurons -------------------------------------------------------
    def realize(self, recipes: list[Recipe], target: Proc, channels: np.ndarray, D: int, shape: tuple,
                bias: np.ndarray | None) -> int:
        """Create the synapses of ``recipes`` (and, with ``bias``, the bias synapses) into the neurons
        ``target`` (rows: ``channels`` × ``D`` planes, channel-major); returns the target's offset."""
        sources: list[tuple[Recipe, Part]] = []
        for r in recipes:
            if r.kind == "conv":
                conv = self.ir.nodes[r.node]
                sources += [(r, p) for p in self.provider(conv.inputs[0])]
            else:
                assert r.part is not None
                if np.isin(channels, r.part.channels).any():
                    sources.append((r, r.part))
        offset = max(p.offset for _, p in sources) + 1
        for r, p in sources:
            if r.kind == "conv":
                self.conv_synapse(self.ir.nodes[r.node], self.delay(p, offset - 1 - p.offset), target, channels, D,
                                  shape)
            else:
                self.identity_synapse(p, target, channels, D, shape, offset - 1 - p.offset)
        if bias is not None:
            self.bias_synapses(bias, target, channels, D, shape)
        return offset

    def rows(self, channels: np.ndarray, D: int) -> np.ndarray:
        return (np.asarray(channels)[:, None] * D + np.arange(D)[None, :]).reshape(-1)

    def conv_synapse(self, conv: Node, part: Part, target: Proc, channels: np.ndarray, D: int, shape: tuple) -> None:
        """The convolution from ``part`` (its channels; planes or graded) to the target rows: a Lava
        ``Conv`` when the block is a whole (grouped) convolution of ≤127 groups, else a ``Sparse``
        matrix of its taps. Planes: every plane of an input channel carries one unit of its count
        (the kernel repeats along them); the outputs repeat once per target plane."""
        op: I.IntConv = conv.op  # type: ignore[assignment]
        w = op.w_int
        per_in, per_out = w.shape[1], w.shape[0] // op.groups
        in_ch, out_ch = np.asarray(part.channels), np.asarray(channels)
        g_in, g_out = in_ch // per_in, out_ch // per_out
        groups = np.unique(g_out)
        whole = (np.array_equal(groups, np.unique(g_in))
                 and len(in_ch) == len(groups) * per_in and len(out_ch) == len(groups) * per_out)
        if op.groups > 1 and whole and len(groups) <= self.t.conv_param_max:
            block, block_groups = w[out_ch], len(groups)  # rows in order, whole groups: a grouped Conv
        else:
            mask = g_out[:, None] == g_in[None, :]
            block = np.zeros((len(out_ch), len(in_ch), *w.shape[2:]), dtype=np.int64)
            cols = np.clip(in_ch[None, :] - g_out[:, None] * per_in, 0, per_in - 1)
            block[mask] = w[np.repeat(out_ch[:, None], len(in_ch), axis=1), cols][mask]
            block_groups = 1 if op.groups == 1 else 0  # 0: no Lava Conv fits, a Sparse of the taps
        block = np.repeat(np.repeat(block, part.D, axis=1), D, axis=0)
        weight, weight_exp = weight_format(block, op.exp)
        in_rows, h, wd = part.shape
        fan_in = np.count_nonzero(block.reshape(block.shape[0], -1), axis=1)
        synops = int(fan_in.sum()) * shape[1] * shape[2]
        in_bound = int((np.abs(block).reshape(block.shape[0], -1).sum(axis=1).max(initial=0) << op.exp)
                       * max(1, part.bound))
        name = f"{conv.name}/conv->{target.name}"
        if block_groups:
            syn = self.add(Proc(name, "Conv", "neuro-core",
                                {"weight": narrow(_lava_kernel(weight)), "weight_exp": weight_exp,
                                 "input_shape": (wd, h, in_rows), "padding": tuple(op.padding[::-1]),
                                 "stride": tuple(op.stride[::-1]), "groups": block_groups, "num_weight_bits": 8,
                                 "num_message_bits": part.bits}, conv.name, synops=synops, in_bound=in_bound))
            self.link(part.proc, part.port, syn.name, "s_in", ("transpose", (2, 1, 0)))
            self.link(syn.name, "a_out", target.name, "a_in", ("transpose", (2, 1, 0)))
        else:
            matrix = conv_matrix(weight, (in_rows, h, wd), shape, op.stride, op.padding)
            syn = self.add(Proc(name, "Sparse", "neuro-core", self.sparse_params(matrix, part, weight_exp),
                                conv.name, synops=int(matrix.nnz), in_bound=in_bound))
            self.link(part.proc, part.port, syn.name, "s_in", ("flatten",))
            self.link(syn.name, "a_out", target.name, "a_in", ("reshape", shape))

    def identity_synapse(self, part: Part, target: Proc, channels: np.ndarray, D: int, shape: tuple,
                         delay: int, shift: int = 0) -> None:
        """Each target row (channel c, plane k) reads channel c of the graded ``part`` (weight 1), or
        ``floor(value / 2^shift)`` (weight 2 at ``weight_exp = −shift − 1``, ``loihi.weight_format``)."""
        from scipy.sparse import csr_matrix

        _, h, w = shape
        hw = h * w
        local = {int(c): i for i, c in enumerate(part.channels)}
        dst, src = [], []
        for j, c in enumerate(channels):
            if int(c) not in local:
                continue
            for k in range(D):
                dst.append((j * D + k) * hw + np.arange(hw))
                src.append(local[int(c)] * hw + np.arange(hw))
        dst_i, src_i = np.concatenate(dst), np.concatenate(src)
        matrix = csr_matrix((np.ones(dst_i.size, np.int64), (dst_i, src_i)),
                            shape=(int(np.prod(shape)), int(np.prod(part.shape))))
        while delay > self.t.max_delay:  # longer than one DelaySparse holds: a relay in between
            part = self.delay(part, delay - self.t.max_delay)
            delay = self.t.max_delay
        if shift:
            weights, weight_exp = weight_format(matrix.data, -shift)
            matrix.data = weights
            params = self.sparse_params(matrix, part, weight_exp)
        else:
            params = self.sparse_params(matrix, part)
        kind = "Sparse"
        if delay:
            kind = "DelaySparse"
            params.update(delays=delay, max_delay=0)
        syn = self.add(Proc(f"{part.proc}->{target.name}", kind, "neuro-core", params, target.node,
                            synops=int(matrix.nnz), in_bound=part.bound))
        self.link(part.proc, part.port, syn.name, "s_in", ("flatten",))
        self.link(syn.name, "a_out", target.name, "a_in", ("reshape", shape))

    def constant(self, value: int) -> Part:
        """An always-on source of ``value`` (1: a LIF neuron that fires every step; 256: a GradedVec
        fed by it through a Sparse weight)."""
        if value not in self.consts:
            if value == 1:
                proc = self.add(Proc("bias/one", "LIFReset", "neuro-core",
                                     {"shape": (1,), "vth": 0, "bias_mant": 1, "bias_exp": 0, "du": 0, "dv": 0,
                                      "reset_interval": 1, "reset_offset": 0}, "", neurons=1, constant=1))
                self.consts[1] = Part(proc.name, "s_out", np.arange(1), 1, False, 0, (1,), 1)
            else:
                from scipy.sparse import csr_matrix

                one = self.constant(1)
                syn = self.add(Proc(f"bias/{value}/sparse", "Sparse", "neuro-core",
                                    {**self.sparse_params(csr_matrix(np.array([[value // 2]])), one),
                                     "weight_exp": 1}, "", synops=1, in_bound=value))
                relay = self.add(Proc(f"bias/{value}", "GradedVec", "neuro-core", {"shape": (1,), "vth": 0}, "",
                                      neurons=1, in_bound=value, constant=value))
                self.link(one.proc, one.port, syn.name, "s_in")
                self.link(syn.name, "a_out", relay.name, "a_in")
                self.consts[value] = Part(relay.name, "s_out", np.arange(1), 1, True, 0, (1,), value)
        return self.consts[value]

    def bias_synapses(self, bias: np.ndarray, target: Proc, channels: np.ndarray, D: int, shape: tuple) -> None:
        """The bias of every target row as synapses from always-on neurons: one Sparse per base-256
        digit (weights 2·d, mixed-sign 8-bit mantissas; units 1, 256 from the binary neuron, 65536 from
        the graded 256)."""
        from scipy.sparse import csr_matrix

        _, h, w = shape
        for d, unit in bias_digits(bias):
            per_row = np.repeat(np.repeat(d, D), h * w)
            source = self.constant(1 if unit < 65536 else 256)
            weight_exp = {1: -1, 256: 7, 65536: 7}.get(unit)
            if weight_exp is None:
                raise DesignRuleError(target.node, "bias_synapse", "|bias| < 2^23", f"a digit of {unit:,}")
            matrix = csr_matrix((2 * per_row, (np.arange(per_row.size), np.zeros(per_row.size, np.int64))),
                                shape=(per_row.size, 1))
            syn = self.add(Proc(f"{target.name}/bias{unit}", "Sparse", "neuro-core",
                                {**self.sparse_params(matrix, source), "weight_exp": weight_exp}, target.node,
                                synops=per_row.size, in_bound=int(np.abs(d).max(initial=0)) * unit))
            self.link(source.proc, source.port, syn.name, "s_in")
            self.link(syn.name, "a_out", target.name, "a_in", ("reshape", shape))

    # --- our processes ------------------------------------------------------------------------
    def operand(self, name: str, offset: int) -> list[Part]:
        return [self.delay(p, offset - p.offset) for p in self.provider(name)]

    def own(self, n: Node, kind: str, params: dict, operands: list[str], work: int) -> list[Part]:
        """One of our processes reading every part of its operands directly (aligned in time)."""
        parts = [self.provider(i) for i in operands]
        offset = max(p.offset for ps in parts for p in ps)
        proc = self.add(Proc(n.name, kind, OWN[kind], params, n.name, work=work))
        ports = []
        for j, name in enumerate(operands):
            for k, p in enumerate(self.operand(name, offset)):
                port = f"in{j}_{k}"
                ports.append({"port": port, "operand": j, "shape": list(p.shape), "channels": p.channels,
                              "planes": 0 if p.graded else p.D,
                              "bias": p.bias if p.bias is not None else np.zeros(len(p.channels), np.int64)})
                self.link(p.proc, p.port, proc.name, port)
        proc.params["inputs"] = ports
        proc.out_bound = self.wide_bound(n)
        return [Part(proc.name, "s_out", np.arange(n.shape[0]), 1, True, offset, n.shape,
                     int(np.max(proc.out_bound)))]

    def wide_bound(self, n: Node) -> Any:
        if isinstance(n.op, I.IntGate):
            return self.membrane(n.name)[0].copy()  # per channel
        if isinstance(n.op, I.SigmoidTable):
            return int(n.op.lut.max(initial=0))
        return 2**62  # wide values stay on embedded cores and the host

    def build_sumpool(self, n: Node) -> list[Part]:
        src = self.ir.nodes[n.inputs[0]]
        return self.own(n, "SumPool", {"shape": n.shape, "in_shape": src.shape}, [src.name],
                        int(np.prod(src.shape)))

    def build_attention(self, n: Node) -> list[Part]:
        from .energy import attention_ops

        return self.own(n, "Attention", {"shape": n.shape, "heads": n.op.heads}, n.inputs,  # type: ignore
                        attention_ops(self.ir, n.name))

    def build_sigmoid(self, n: Node) -> list[Part]:
        op: I.SigmoidTable = n.op  # type: ignore[assignment]
        return self.own(n, "SigmoidTable", {"shape": n.shape, "z_shift": op.z_shift, "z_lo": op.z_lo,
                                            "z_hi": op.z_hi, "lut": op.lut}, n.inputs, n.shape[0])

    def build_gate(self, n: Node) -> list[Part]:
        op: I.IntGate = n.op  # type: ignore[assignment]
        parts = self.own(n, "Gate", {"shape": n.shape, "mult": op.mult, "r": op.r}, n.inputs,
                         2 * int(np.prod(n.shape)))
        bound = int(self.membrane(n.name)[0].max(initial=0))
        if bound > self.t.message_max:
            raise DesignRuleError(n.name, "message_bits", f"|value| ≤ {self.t.message_max:,}", bound)
        return parts

    def build_bilinear(self, n: Node) -> list[Part]:
        return self.own(n, "Bilinear", {"shape": n.shape, "factor": n.op.factor}, n.inputs,  # type: ignore
                        4 * int(np.prod(n.shape)))

    # --- the whole graph ----------------------------------------------------------------------
    def build(self) -> NetworkPlan:
        for n in self.ir.outputs():  # model order
            self.provider(n.inputs[0])
            self.plan.outputs.append(n.inputs[0])
        for n in self.ir:  # spike layers no output depends on are still simulated and read out
            if isinstance(n.op, I.IntSpike):
                self.provider(n.name)
        self.plan.depth = max(p.offset for ps in self.plan.observed.values() for p in ps)
        readout = self.add(Proc("readout", "Readout", "host", {"inputs": []}, ""))
        for name, parts in self.plan.observed.items():
            for k, p in enumerate(parts):
                port = f"in{len(readout.params['inputs'])}"
                readout.params["inputs"].append({"port": port, "node": name, "shape": list(p.shape),
                                                 "channels": p.channels, "planes": 0 if p.graded else p.D,
                                                 "offset": p.offset, "part": k,
                                                 "bias": p.bias if p.bias is not None else None})
                self.link(p.proc, p.port, readout.name, port)
        return self.plan


def conv_matrix(weight: np.ndarray, in_shape: tuple, out_shape: tuple, stride, padding):
    """The CSR matrix (outputs × inputs, C-order of C×H×W) of a dense convolution weight (O, I, kh, kw)."""
    from scipy.sparse import csr_matrix

    c_out, c_in, kh, kw = weight.shape
    _, h, w = in_shape
    _, oh, ow = out_shape
    sh, sw = stride
    ph, pw = padding
    oy, ox = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
    rows, cols, vals = [], [], []
    for o, i, dy, dx in zip(*np.nonzero(weight)):
        iy, ix = oy * sh + dy - ph, ox * sw + dx - pw
        ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        rows.append((o * oh * ow + oy * ow + ox)[ok])
        cols.append((i * h * w + iy * w + ix)[ok])
        vals.append(np.full(int(ok.sum()), weight[o, i, dy, dx], dtype=np.int64))
    if not rows:
        return csr_matrix((c_out * oh * ow, c_in * h * w), dtype=np.int64)
    return csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(c_out * oh * ow, c_in * h * w))


def build_plan(ir: Graph, target: Target) -> NetworkPlan:
    """The Loihi 2 network of an integer IR graph (see the module docstring)."""
    if ir.integer is None:
        raise InternalError("build_plan needs an integer graph")
    return _Builder(ir, target).build()


def payload_bits(D: int) -> int:
    return count_bits(D)
