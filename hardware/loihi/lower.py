"""Lowering: an integer graph → its Loihi 2 network plan, one ``LOWERING`` entry per operation.

What runs where (docs/lava.md):

- neuro-cores, Lava's library processes only: ``Conv`` and ``Sparse``/``DelaySparse`` synapses,
  memoryless ``LIFReset`` neurons (a multi-spike neuron of count 0..D is D binary planes;
  thresholds as one ``vth`` per process plus per-neuron bias offsets, ``target.loihi``),
  ``GradedVec`` relays (``vth = 0``: an exact relay of a 24-bit value) for residual streams and
  head logits, always-on neurons whose synapses deliver biases the neurons' own bias cannot hold;
- embedded cores, processes of ours (one per operation): global sum pooling, the attention
  product, spikes on those wide values, the sigmoid table, the gate;
- the host: the pixel source, the bilinear head resize, the readout.

Each ``LOWERING`` entry returns the *parts* that carry its node's value (neuron outputs), or,
for a convolution or join whose one consumer is a spike or a join, the *recipes* of its membrane
(its synapses then go straight into that consumer's neurons, so they are created with them). A
node is lowered when it is first read, outputs first in model order, then every spike layer:
that order fixes the order of the processes, which the placement packs in. Every synapse takes
one step, neurons and our processes none; ``timing`` balances the delays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from ...errors import DesignRuleError, InternalError
from ...export import ops as O
from ...export.ir import Graph, Node
from ..integer import ops as I
from ..integer.bounds import Bound, static_bounds
from ..integer.semantics import WIDE_MAX
from ..target.chips import Target
from ..target.loihi import LifLayout, bias_digits, pre_shift_layout, weight_format
from .plan import (
    AttentionSpec,
    BilinearSpec,
    ConvSpec,
    DelaySparseSpec,
    GateSpec,
    GradedVecSpec,
    LIFResetSpec,
    Link,
    NetworkPlan,
    OwnSpec,
    PixelSourceSpec,
    ReadoutSpec,
    SigmoidTableSpec,
    SparseSpec,
    Spec,
    SumPoolSpec,
    WideSpikeSpec,
    narrow,
    relay_spec,
    sparse_spec,
)
from .timing import Part, delayed

WARMUP = 3  # steps before the first image: the constant bias inputs are complete from step 3
BINARY = 1  # the value an always-on LIF neuron sends every step
GRADED_CONSTANT = 256  # the always-on graded relay for bias digits of 65536 and up


@dataclass
class Recipe:
    """A synaptic contribution to a membrane: a convolution of a node's input (``conv``), or an
    identity from a graded part (``part``)."""

    conv: str = ""
    part: Part | None = None


def channel_chunks(channels: int, limit: int) -> list[np.ndarray]:
    """Contiguous, nearly equal chunks of at most ``limit`` channels (Conv's int8 groups)."""
    n = -(-channels // limit)
    return [np.asarray(c) for c in np.array_split(np.arange(channels), n)]


def _lava_kernel(w: np.ndarray) -> np.ndarray:
    """Correlation weights (O, I, kh, kw) as Lava's convolution kernel (O, kx, ky, I): transposed, flipped."""
    return np.ascontiguousarray(np.asarray(w).transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])


class Lowering:
    """The plan under construction and the parts (or recipes) of every node lowered so far."""

    def __init__(self, ir: Graph, target: Target) -> None:
        self.ir, self.t = ir, target
        self.plan = NetworkPlan(target=target.name)
        self.bounds: dict[str, Bound] = static_bounds(ir)
        self.parts: dict[str, list[Part]] = {}
        self.pending: dict[str, list[Recipe]] = {}
        self.delayed: dict[tuple[str, int], Part] = {}
        self.consts: dict[int, Part] = {}

    # --- plumbing -------------------------------------------------------------------------------
    def add(self, spec: Spec) -> Spec:
        base, k = spec.name, 1
        while spec.name in self.plan.procs:
            k += 1
            spec.name = f"{base}#{k}"
        self.plan.procs[spec.name] = spec
        return spec

    def link(self, src: str, src_port: str, dst: str, dst_port: str, via: tuple = ()) -> None:
        self.plan.links.append(Link(src, src_port, dst, dst_port, via))

    def membrane(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(bound of the synaptic sum, bias) of a convolution, join or gate."""
        b = self.bounds[name]
        if b.syn is None or b.bias is None:
            raise InternalError(f"{self.ir.nodes[name].kind} node {name} is no membrane")
        return b.syn, b.bias

    def lower(self, name: str) -> None:
        """Lower a node once, by its operation's ``LOWERING`` entry."""
        if name in self.parts or name in self.pending:
            return
        n = self.ir.nodes[name]
        entry = LOWERING.get(type(n.op))
        if entry is None:
            raise InternalError(f"no network rule for {n.kind} node {name}")
        parts = entry(self, n)
        if parts is not None:
            self.parts[name] = parts
            if not isinstance(n.op, O.Input):
                self.plan.observed[name] = parts

    def provider(self, name: str) -> list[Part]:
        """The neuron outputs that carry a node's value."""
        self.lower(name)
        if name not in self.parts:
            raise InternalError(f"node {name} has no neurons of its own")
        return self.parts[name]

    def recipes(self, name: str) -> list[Recipe]:
        """What a node adds to a membrane that reads it: its own synapses, or its parts."""
        self.lower(name)
        if name in self.pending:
            return self.pending[name]
        return [Recipe(part=p) for p in self.provider(name)]

    def passes_through(self, name: str) -> bool:
        """A convolution or join with one consumer, a spike or a join, needs no neuron of its own:
        its synapses go straight into that consumer's neurons."""
        users = self.ir.consumers(name)
        return len(users) == 1 and isinstance(users[0].op, I.IntSpike | O.Add) and \
            isinstance(self.ir.nodes[name].op, I.IntConv | O.Add)

    # --- synapses into a group of neurons -------------------------------------------------------
    def realize(self, recipes: list[Recipe], target: Spec, channels: np.ndarray, D: int, shape: tuple,
                bias: np.ndarray | None) -> int:
        """Create the synapses of ``recipes`` (and, with ``bias``, the bias synapses) into the neurons
        ``target`` (rows: ``channels`` × ``D`` planes, channel-major); returns the target's offset."""
        sources: list[tuple[Recipe, Part]] = []
        for r in recipes:
            if r.conv:
                sources += [(r, p) for p in self.provider(self.ir.nodes[r.conv].inputs[0])]
            elif r.part is not None and np.isin(channels, r.part.channels).any():
                sources.append((r, r.part))
        offset = max(p.offset for _, p in sources) + 1
        for r, p in sources:
            if r.conv:
                self.conv_synapse(self.ir.nodes[r.conv], delayed(self, p, offset - 1 - p.offset), target, channels,
                                  D, shape)
            else:
                self.identity_synapse(p, target, channels, D, shape, offset - 1 - p.offset)
        if bias is not None:
            self.bias_synapses(bias, target, channels, D, shape)
        return offset

    def conv_synapse(self, conv: Node, part: Part, target: Spec, channels: np.ndarray, D: int, shape: tuple) -> None:
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
        in_bound = int((np.abs(block).reshape(block.shape[0], -1).sum(axis=1).max(initial=0) << op.exp)
                       * max(1, part.bound))
        name = f"{conv.name}/conv->{target.name}"
        if block_groups:
            syn = self.add(ConvSpec(name=name, weight=narrow(_lava_kernel(weight)), weight_exp=weight_exp,
                                    input_shape=(wd, h, in_rows), padding=tuple(op.padding[::-1]),
                                    stride=tuple(op.stride[::-1]), groups=block_groups,
                                    num_message_bits=part.bits, node=conv.name,
                                    synops=int(fan_in.sum()) * shape[1] * shape[2], in_bound=in_bound))
            self.link(part.proc, part.port, syn.name, "s_in", ("transpose", (2, 1, 0)))
            self.link(syn.name, "a_out", target.name, "a_in", ("transpose", (2, 1, 0)))
        else:
            matrix = conv_matrix(weight, (in_rows, h, wd), shape, op.stride, op.padding)
            syn = self.add(sparse_spec(SparseSpec, name, matrix, part, weight_exp, node=conv.name,
                                       synops=int(matrix.nnz), in_bound=in_bound))
            self.link(part.proc, part.port, syn.name, "s_in", ("flatten",))
            self.link(syn.name, "a_out", target.name, "a_in", ("reshape", shape))

    def identity_synapse(self, part: Part, target: Spec, channels: np.ndarray, D: int, shape: tuple,
                         delay: int, shift: int = 0) -> None:
        """Each target row (channel c, plane k) reads channel c of the graded ``part`` (weight 1), or
        ``floor(value / 2^shift)`` (weight 2 at ``weight_exp = −shift − 1``, ``loihi.weight_format``)."""
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
            part = delayed(self, part, delay - self.t.max_delay)
            delay = self.t.max_delay
        weight_exp = 0
        if shift:
            matrix.data, weight_exp = weight_format(matrix.data, -shift)
        name, extra = f"{part.proc}->{target.name}", {"node": target.node, "synops": int(matrix.nnz),
                                                       "in_bound": part.bound}
        syn = self.add(sparse_spec(DelaySparseSpec, name, matrix, part, weight_exp, delays=delay, **extra) if delay
                       else sparse_spec(SparseSpec, name, matrix, part, weight_exp, **extra))
        self.link(part.proc, part.port, syn.name, "s_in", ("flatten",))
        self.link(syn.name, "a_out", target.name, "a_in", ("reshape", shape))

    def constant(self, value: int) -> Part:
        """An always-on source of ``value`` (1: a LIF neuron that fires every step; 256: a GradedVec
        fed by it through a Sparse weight)."""
        if value not in self.consts:
            if value == BINARY:
                spec = self.add(LIFResetSpec(name="bias/one", shape=(1,), bias_mant=1, neurons=1, constant=1))
                self.consts[value] = Part(spec.name, "s_out", np.arange(1), 1, False, 0, (1,), 1)
            else:
                one = self.constant(BINARY)
                syn = self.add(sparse_spec(SparseSpec, f"bias/{value}/sparse", csr_matrix(np.array([[value // 2]])),
                                           one, 1, synops=1, in_bound=value))
                relay = self.add(GradedVecSpec(name=f"bias/{value}", shape=(1,), neurons=1, in_bound=value,
                                               constant=value))
                self.link(one.proc, one.port, syn.name, "s_in")
                self.link(syn.name, "a_out", relay.name, "a_in")
                self.consts[value] = Part(relay.name, "s_out", np.arange(1), 1, True, 0, (1,), value)
        return self.consts[value]

    def bias_synapses(self, bias: np.ndarray, target: Spec, channels: np.ndarray, D: int, shape: tuple) -> None:
        """The bias of every target row as synapses from always-on neurons: one Sparse per base-256
        digit (weights 2·d, mixed-sign 8-bit mantissas; units 1, 256 from the binary neuron, 65536 from
        the graded 256)."""
        _, h, w = shape
        for d, unit in bias_digits(bias):
            per_row = np.repeat(np.repeat(d, D), h * w)
            source = self.constant(BINARY if unit < 65536 else GRADED_CONSTANT)
            weight_exp = {1: -1, 256: 7, 65536: 7}.get(unit)
            if weight_exp is None:
                raise DesignRuleError(target.node, "bias_synapse", "|bias| < 2^23", f"a digit of {unit:,}")
            matrix = csr_matrix((2 * per_row, (np.arange(per_row.size), np.zeros(per_row.size, np.int64))),
                                shape=(per_row.size, 1))
            syn = self.add(sparse_spec(SparseSpec, f"{target.name}/bias{unit}", matrix, source, weight_exp,
                                       node=target.node, synops=per_row.size,
                                       in_bound=int(np.abs(d).max(initial=0)) * unit))
            self.link(source.proc, source.port, syn.name, "s_in")
            self.link(syn.name, "a_out", target.name, "a_in", ("reshape", shape))

    # --- neurons of a membrane --------------------------------------------------------------------
    def relay(self, n: Node, recipes: Callable[[], list[Recipe]]) -> list[Part]:
        """A membrane several consumers read (or one that is not a spike): a GradedVec relay of its
        synaptic sum; the bias travels with the part for its readers."""
        syn, bias = self.membrane(n.name)
        if syn.max(initial=0) > self.t.message_max:
            raise DesignRuleError(n.name, "message_bits", f"|value| ≤ {self.t.message_max:,}", int(syn.max()))
        spec = self.add(GradedVecSpec(name=f"{n.name}/relay", shape=n.shape, node=n.name,
                                      neurons=int(np.prod(n.shape)), in_bound=int(syn.max(initial=0))))
        offset = self.realize(recipes(), spec, np.arange(n.shape[0]), 1, n.shape, None)
        return [Part(spec.name, "s_out", np.arange(n.shape[0]), 1, True, offset, n.shape, int(syn.max(initial=0)),
                     bias)]

    def whole_membrane(self, n: Node, src: Node, chunk: np.ndarray) -> Part:
        """The membrane of ``chunk``'s channels with its bias, whole in a GradedVec relay (for LIF
        neurons that read it pre-shifted)."""
        syn, bias = self.membrane(src.name)
        full = syn[chunk] + np.abs(bias[chunk])
        if full.max(initial=0) > self.t.message_max:
            raise DesignRuleError(n.name, "message_bits", f"|membrane| ≤ {self.t.message_max:,}", int(full.max()))
        shape = (len(chunk), *n.shape[1:])
        name = f"{n.name}/membrane" + ("" if len(chunk) == n.shape[0] else f"-{chunk[0]}")
        spec = self.add(GradedVecSpec(name=name, shape=shape, node=n.name, neurons=int(np.prod(shape)),
                                      in_bound=int(full.max(initial=0))))
        offset = self.realize(self.recipes(src.name), spec, chunk, 1, shape, bias[chunk])
        return Part(spec.name, "s_out", chunk, 1, True, offset, shape, int(full.max(initial=0)))

    def chunks(self, n: Node) -> list[np.ndarray]:
        """Channel chunks of a spike layer: one, unless a grouped convolution of more groups than
        Lava's Conv holds (int8) writes or reads it; then chunks that convolution follows."""
        users = [c for c in self.ir.consumers(n.name) if isinstance(c.op, I.IntConv)]
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

    def lif(self, n: Node, src: Node, chunk: np.ndarray, layout: LifLayout, group, k: int,
            whole: Part | None = None, shift: int = 0) -> Part:
        """LIF planes of ``group``'s rows, fed by the membrane's synapses, or (``whole``) by the
        relay that holds it, through an identity synapse that shifts right by ``shift``."""
        D = n.op.D  # type: ignore[attr-defined]
        rows_local = np.asarray(group.rows)
        channels = chunk[np.unique(rows_local // D)]
        shape = (len(rows_local), *n.shape[1:])
        name = n.name if len(layout.groups) == 1 and len(chunk) == n.shape[0] else f"{n.name}/part{k}-{chunk[0]}"
        # per row, broadcast over the pixels (a view: the neurons' values without a copy per neuron)
        spec = self.add(LIFResetSpec(
            name=name, shape=shape, vth=int(group.vth),
            bias_mant=np.broadcast_to(group.bias_mant.reshape(-1, 1, 1), shape),
            bias_exp=np.broadcast_to(group.bias_exp.reshape(-1, 1, 1), shape), node=n.name,
            neurons=int(np.prod(shape)),
            in_bound=int(layout.input_bound[np.searchsorted(chunk, channels)].max(initial=0))))
        if whole is not None:
            self.identity_synapse(whole, spec, channels, D, shape, 0, shift)
            offset = whole.offset + 1
        else:
            offset = self.realize(self.recipes(src.name), spec, channels, D, shape,
                                  self.membrane(src.name)[1][channels] if layout.bias_synapses else None)
        return Part(spec.name, "s_out", channels, D, False, offset, shape, 1)

    def relay_through(self, n: Node, part: Part, matrix, shape: tuple, name: str, D: int, in_bound: int) -> Part:
        """``part`` → Sparse(matrix) → a relay neuron of the same kind (LIF planes or GradedVec)."""
        syn = self.add(sparse_spec(SparseSpec, f"{name}/sparse", matrix, part, node=n.name, synops=int(matrix.nnz),
                                   in_bound=in_bound))
        self.link(part.proc, part.port, syn.name, "s_in", ("flatten",))
        relay = self.add(relay_spec(name, part, shape, n.name, in_bound))
        self.link(syn.name, "a_out", relay.name, "a_in", ("reshape", shape))
        return Part(relay.name, "s_out", part.channels, D, part.graded, part.offset + 1, shape,
                    in_bound if part.graded else 1, part.bias)

    # --- our processes ------------------------------------------------------------------------
    def own(self, n: Node, spec: OwnSpec, operands: list[str]) -> list[Part]:
        """One of our processes reading every part of its operands directly (aligned in time)."""
        parts = [self.provider(i) for i in operands]
        offset = max(p.offset for ps in parts for p in ps)
        spec = self.add(spec)
        for j, name in enumerate(operands):
            for k, p in enumerate(self.provider(name)):
                p = delayed(self, p, offset - p.offset)
                port = f"in{j}_{k}"
                spec.inputs.append({"port": port, "operand": j, "shape": list(p.shape), "channels": p.channels,
                                    "planes": 0 if p.graded else p.D,
                                    "bias": p.bias if p.bias is not None else np.zeros(len(p.channels), np.int64)})
                self.link(p.proc, p.port, spec.name, port)
        spec.out_bound = self.wide_bound(n)
        return [Part(spec.name, "s_out", np.arange(n.shape[0]), 1, True, offset, n.shape,
                     int(np.max(spec.out_bound)))]

    def wide_bound(self, n: Node):
        if isinstance(n.op, I.IntGate):
            return self.membrane(n.name)[0].copy()  # per channel
        if isinstance(n.op, I.SigmoidTable):
            return int(n.op.lut.max(initial=0))
        return WIDE_MAX  # wide values stay on embedded cores and the host

    def build(self) -> NetworkPlan:
        for n in self.ir.outputs():  # model order
            self.provider(n.inputs[0])
        for n in self.ir.of(I.IntSpike):  # spike layers no output depends on are still simulated and read out
            self.provider(n.name)
        self.plan.depth = max(p.offset for ps in self.plan.observed.values() for p in ps)
        readout = self.add(ReadoutSpec(name="readout"))
        for name, parts in self.plan.observed.items():
            for k, p in enumerate(parts):
                port = f"in{len(readout.inputs)}"
                readout.inputs.append({"port": port, "node": name, "shape": list(p.shape), "channels": p.channels,
                                       "planes": 0 if p.graded else p.D, "offset": p.offset, "part": k,
                                       "bias": p.bias if p.bias is not None else None})
                self.link(p.proc, p.port, readout.name, port)
        self.plan.outputs = [o.inputs[0] for o in self.ir.outputs()]
        self.plan.real_scales = [np.asarray(o.op.real_scale) for o in self.ir.outputs()]
        self.plan.spike_nodes = {n.name for n in self.ir.of(I.IntSpike)}
        return self.plan


# --- one entry per operation ----------------------------------------------------------------------
def _input(b: Lowering, n: Node) -> list[Part]:
    bound = int(b.bounds[n.name].magnitude)
    spec = b.add(PixelSourceSpec(name="input", shape=n.shape, node=n.name, out_bound=bound))
    b.plan.input_shape = n.shape
    return [Part(spec.name, "s_out", np.arange(n.shape[0]), 1, True, 0, n.shape, bound)]


def _conv(b: Lowering, n: Node) -> list[Part] | None:
    if b.passes_through(n.name):
        b.pending[n.name] = [Recipe(conv=n.name)]
        return None
    return b.relay(n, lambda: [Recipe(conv=n.name)])


def _add(b: Lowering, n: Node) -> list[Part] | None:
    def recipes() -> list[Recipe]:
        return [r for i in n.inputs for r in b.recipes(i)]

    if b.passes_through(n.name):
        b.pending[n.name] = recipes()
        return None
    return b.relay(n, recipes)


def _spike(b: Lowering, n: Node) -> list[Part]:
    op: I.IntSpike = n.op  # type: ignore[assignment]
    src = b.ir.nodes[n.inputs[0]]
    if isinstance(src.op, I.SumPool | I.IntAttention):
        return _wide_spike(b, n)
    syn, bias = b.membrane(src.name)
    parts = []
    for chunk in b.chunks(n):
        found = pre_shift_layout(op.theta[chunk], bias[chunk], syn[chunk], b.t)
        if found is None:
            raise DesignRuleError(n.name, "lif_threshold", f"vth 0..{b.t.vth_max} with 13-bit offsets",
                                  "thresholds no LIF process holds")
        shift, layout = found
        whole = b.whole_membrane(n, src, chunk) if shift else None
        parts += [b.lif(n, src, chunk, layout, group, k, whole, shift) for k, group in enumerate(layout.groups)]
    return parts


def _wide_spike(b: Lowering, n: Node) -> list[Part]:
    parts = b.provider(n.inputs[0])
    if len(parts) != 1:
        raise InternalError(f"{n.kind} node {n.name} reads a value split into {len(parts)} processes")
    (part,) = parts
    D = n.op.D  # type: ignore[attr-defined]
    spec = b.add(WideSpikeSpec(name=n.name, shape=n.shape, theta=n.op.theta, node=n.name,  # type: ignore
                               work=int(np.prod(n.shape)) * D, out_bound=D))
    b.link(part.proc, part.port, spec.name, "a_in")
    return [Part(spec.name, "s_out", np.arange(n.shape[0]), 1, True, part.offset, n.shape, D)]


def _maxpool(b: Lowering, n: Node) -> list[Part]:
    """max over H·W of a count = Σ_k [plane k fired anywhere]: per plane row, a Sparse sum of its
    H·W neurons into a LIF neuron that fires on any input (vth 0)."""
    out = []
    for i, part in enumerate(b.provider(n.inputs[0])):
        if part.graded:
            raise InternalError(f"max pool {n.name} reads graded counts")
        rows, h, w = part.shape
        idx = np.arange(rows * h * w)
        matrix = csr_matrix((np.ones(idx.size, np.int64), (idx // (h * w), idx)), shape=(rows, rows * h * w))
        out.append(b.relay_through(n, part, matrix, (rows, 1, 1), f"{n.name}/part{i}" if i else n.name,
                                   part.D, h * w))
    return out


def _upsample(b: Lowering, n: Node) -> list[Part]:
    f = n.op.factor  # type: ignore[attr-defined]
    out = []
    for i, part in enumerate(b.provider(n.inputs[0])):
        rows, h, w = part.shape
        oy, ox = np.meshgrid(np.arange(h * f), np.arange(w * f), indexing="ij")
        dst = np.arange(rows)[:, None, None] * (h * f * w * f) + (oy * w * f + ox)[None]
        src = np.arange(rows)[:, None, None] * (h * w) + ((oy // f) * w + ox // f)[None]
        matrix = csr_matrix((np.ones(dst.size, np.int64), (dst.reshape(-1), src.reshape(-1))),
                            shape=(rows * h * f * w * f, rows * h * w))
        out.append(b.relay_through(n, part, matrix, (rows, h * f, w * f), f"{n.name}/part{i}" if i else n.name,
                                   part.D, part.bound))
    return out


def _sumpool(b: Lowering, n: Node) -> list[Part]:
    src = b.ir.nodes[n.inputs[0]]
    return b.own(n, SumPoolSpec(name=n.name, node=n.name, shape=n.shape, in_shape=src.shape,
                                work=int(np.prod(src.shape))), [src.name])


def _attention(b: Lowering, n: Node) -> list[Part]:
    from .energy import attention_ops

    return b.own(n, AttentionSpec(name=n.name, node=n.name, shape=n.shape, heads=n.op.heads,  # type: ignore
                                  work=attention_ops(b.ir, n.name)), n.inputs)


def _sigmoid(b: Lowering, n: Node) -> list[Part]:
    op: I.SigmoidTable = n.op  # type: ignore[assignment]
    return b.own(n, SigmoidTableSpec(name=n.name, node=n.name, shape=n.shape, z_shift=op.z_shift, z_lo=op.z_lo,
                                     z_hi=op.z_hi, lut=op.lut, work=n.shape[0]), n.inputs)


def _gate(b: Lowering, n: Node) -> list[Part]:
    op: I.IntGate = n.op  # type: ignore[assignment]
    parts = b.own(n, GateSpec(name=n.name, node=n.name, shape=n.shape, mult=op.mult, r=op.r,
                              work=2 * int(np.prod(n.shape))), n.inputs)
    bound = int(b.membrane(n.name)[0].max(initial=0))
    if bound > b.t.message_max:
        raise DesignRuleError(n.name, "message_bits", f"|value| ≤ {b.t.message_max:,}", bound)
    return parts


def _bilinear(b: Lowering, n: Node) -> list[Part]:
    return b.own(n, BilinearSpec(name=n.name, node=n.name, shape=n.shape, factor=n.op.factor,  # type: ignore
                                 work=4 * int(np.prod(n.shape))), n.inputs)


LOWERING: dict[type, Callable[[Lowering, Node], list[Part] | None]] = {
    O.Input: _input,
    I.IntConv: _conv,
    O.Add: _add,
    I.IntSpike: _spike,
    O.MaxPool: _maxpool,
    O.Upsample: _upsample,
    I.SumPool: _sumpool,
    I.IntAttention: _attention,
    I.SigmoidTable: _sigmoid,
    I.IntGate: _gate,
    I.IntBilinear: _bilinear,
    I.IntOutput: lambda b, n: None,  # read by the host readout from its source's parts
}


def conv_matrix(weight: np.ndarray, in_shape: tuple, out_shape: tuple, stride, padding):
    """The CSR matrix (outputs × inputs, C-order of C×H×W) of a dense convolution weight (O, I, kh, kw)."""
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
    return Lowering(ir, target).build()

