"""``quantize`` and ``simulate``: the public integer pipeline on NIR artifacts.

float NIR ──quantize──► integer NIR ──simulate(backend="fast" | "reference")──► SimResult
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np
import torch

from ..errors import LensNetDeployError
from ..export.from_nir import from_nir
from ..export.ir_exec import run_ir
from ..export.to_nir import to_nir
from .int_sim import simulate_int
from .quantize import WEIGHT_MAX, quantize_ir

BACKENDS = ("fast", "reference", "lava")


@dataclass
class SimResult:
    """``logits`` in real units (sigmoid gives saliency), ``raw`` the exact integers,
    ``spike_counts`` every neuron layer's integer counts."""

    logits: tuple[torch.Tensor, ...]
    raw: tuple[torch.Tensor, ...]
    spike_counts: dict[str, torch.Tensor] = field(default_factory=dict)
    observed_max: dict[str, int] = field(default_factory=dict)


@dataclass
class QuantizeReport:
    """Per-layer bounds and SQNR; on calibration images: spike agreement with the float
    model, saturation counts and (with masks) float vs integer SOD metrics."""

    layers: list[dict]
    spike_agreement: dict[str, float]
    saturation: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def format(self, top: int = 8) -> str:
        lines = ["layer                                              bits  SQNR dB   bound      observed"]
        for row in sorted(self.layers, key=lambda r: -r["bound"] / r["limit"])[:top]:
            sqnr = f"{row['sqnr_db']:7.1f}" if row.get("sqnr_db") is not None else "      -"
            lines.append(f"{row['layer'][:50]:<50} {row['bits']:>4} {sqnr} {row['bound']:>9,} "
                         f"{row.get('observed', 0):>11,}")
        if self.spike_agreement:
            values = np.array(list(self.spike_agreement.values()))
            lines.append(f"spike counts equal to the float model: mean {100 * values.mean():.2f} % of neurons "
                         f"per layer (min {100 * values.min():.2f} %, {len(values)} layers)")
        sat = self.saturation
        if sat:
            lines.append(f"saturation: {sat['weights_clipped']} weights clipped to int8; {sat['state_over_bound']} "
                         f"membranes beyond the 24-bit proof (0 by construction)")
        if "neurons" in sat:
            lines.append(f"  neurons at the top count D: integer {sat['at_top_integer']:,}, float "
                         f"{sat['at_top_float']:,} of {sat['neurons']:,}; sigmoid inputs beyond the gate table: "
                         f"{sat['gate_beyond_table']} of {sat['gate_inputs']}")
        if self.metrics:
            from ..metrics import format_table

            lines.append(f"float vs integer on the {sat.get('images', '')} calibration images with masks:")
            lines.append(format_table(self.metrics))
        return "\n".join(lines)


def _sqnr(weight: np.ndarray, approx: np.ndarray) -> float | None:
    noise = float(((weight - approx) ** 2).sum())
    signal = float((weight**2).sum())
    return None if noise == 0 or signal == 0 else 10 * np.log10(signal / noise)


def quantize(graph: nir.NIRGraph, calibration_images: torch.Tensor | None = None,
             **options) -> nir.NIRGraph:
    """Float lensnet NIR graph → integer NIR graph (docs/integer_semantics.md).

    Options: ``per_channel`` (default True: one shift per channel of each
    residual stream; False: one per stream) and ``strict`` (fail instead of
    coarsening a stream to fit 24 bits). Shifts come from static worst-case
    bounds, so the integer graph depends on the weights alone;
    ``calibration_images`` matter for the report of ``quantize_with_report``
    (observed maxima, spike agreement, saturations, metrics)."""
    return quantize_with_report(graph, None, **options)[0]


def quantize_with_report(graph: nir.NIRGraph, calibration_images: torch.Tensor | None = None,
                         masks: list[np.ndarray] | None = None, batch_size: int = 2,
                         **options) -> tuple[nir.NIRGraph, QuantizeReport]:
    """``quantize`` plus its report; ``masks`` (one per calibration image) add the float vs
    integer SOD metrics. Images go through both models ``batch_size`` at a time (the float
    model's every layer is kept for the spike comparison)."""
    unknown = set(options) - {"per_channel", "strict"}
    if unknown:
        raise LensNetDeployError(f"unknown quantize options: {', '.join(sorted(unknown))} (known: per_channel, strict)")
    ir = from_nir(graph)
    if "quantized" in ir.meta:
        raise LensNetDeployError("graph is already quantized")
    for n in ir.of_op("conv"):
        for key in ("weight", "bias"):
            if n.attrs[key] is not None and not np.isfinite(n.attrs[key]).all():
                raise LensNetDeployError(f"layer {n.name}: {key}s are not finite (NaN or Inf)")
    if masks is not None and (calibration_images is None or len(masks) != len(calibration_images)):
        raise LensNetDeployError("masks need one calibration image each")
    q, bounds = quantize_ir(ir, **options)
    rows = []
    clipped = 0
    for row in bounds.rows:
        n = q.nodes[row["layer"]]
        entry = dict(row, bits=24)
        if n.op == "conv":
            exact = n.attrs["weight"]
            at = np.exp2((n.attrs["shift"] - n.attrs["exp"]).astype(np.float64))[:, None, None, None]
            approx = n.attrs["w_int"] / at
            entry.update(bits=8, sqnr_db=_sqnr(exact, approx))
            clipped += int((np.abs(np.rint(exact * at)) > WEIGHT_MAX).sum())
        rows.append(entry)
    report = QuantizeReport(rows, {}, {"weights_clipped": clipped,
                                       "state_over_bound": sum(r["bound"] > r["limit"] for r in rows)})
    if calibration_images is not None:
        _calibration_report(ir, q, calibration_images, masks, batch_size, report)
    return to_nir(q), report


def _calibration_report(ir, q, images: torch.Tensor, masks: list[np.ndarray] | None, batch_size: int,
                        report: QuantizeReport) -> None:
    """Observed maxima, spike agreement, saturations and metrics, batch by batch."""
    from ..metrics import METRIC_KEYS, SODMetrics
    from ..predict import saliency_map
    from .fast_sim import FastSimulator

    sim = FastSimulator(q)
    sigmoids = q.of_op("sigmoid")
    gate_inputs = [n.inputs[0] for n in sigmoids]
    spikes = [n.name for n in q.of_op("spike")]
    observed: dict[str, int] = {}
    equal = dict.fromkeys(spikes, 0)
    sat = dict(neurons=0, at_top_integer=0, at_top_float=0, gate_beyond_table=0, gate_inputs=0, images=len(images))
    scores = {"float": SODMetrics(), "integer": SODMetrics()} if masks is not None else {}
    p1 = ir.outputs()[0].name
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        run = sim(x, keep=gate_inputs, observe=True)
        floats = run_ir(ir, x, keep=True)
        for name, value in run.observed_max.items():
            observed[name] = max(observed.get(name, 0), value)
        for name in spikes:
            counts, top = run.spike_counts[name].long(), int(q.nodes[name].attrs["D"])
            reference = floats[name].round().long()
            equal[name] += int((reference == counts).sum())
            sat["neurons"] += counts.numel()
            sat["at_top_integer"] += int((counts == top).sum())
            sat["at_top_float"] += int((reference == top).sum())
        for n in sigmoids:
            a = n.attrs
            idx = run.values[n.inputs[0]][:, :, 0, 0] >> torch.as_tensor(a["z_shift"]).view(1, -1)
            beyond = (idx < torch.as_tensor(a["z_lo"]).view(1, -1)) | (idx > torch.as_tensor(a["z_hi"]).view(1, -1))
            sat["gate_beyond_table"] += int(beyond.sum())
            sat["gate_inputs"] += beyond.numel()
        for i, mask in enumerate(masks[start:start + batch_size] if masks is not None else []):
            scores["float"].step(saliency_map(floats[p1][i], mask.shape), mask)
            scores["integer"].step(saliency_map(run.logits[0][i].float(), mask.shape), mask)
    for row in report.layers:
        row["observed"] = observed.get(row["layer"], 0)
    per_image = {name: q.nodes[name].shape for name in spikes}
    report.spike_agreement = {name: equal[name] / (len(images) * int(np.prod(per_image[name]))) for name in spikes}
    report.saturation.update(sat)
    if scores:
        rows = {k: v.results() for k, v in scores.items()}
        rows["Δ (int − float)"] = {k: rows["integer"][k] - rows["float"][k] for k in METRIC_KEYS}
        report.metrics = rows


def check_integer_widths(ir) -> None:
    """Refuse an integer graph whose parameters break the widths of docs/integer_semantics.md."""
    from .quantize import STATE_MAX, WEIGHT_MAX

    for n in ir:
        a = n.attrs
        if n.op == "conv":
            if np.abs(a["w_int"]).max(initial=0) > WEIGHT_MAX:
                raise LensNetDeployError(f"layer {n.name}: weight mantissa outside int8 (|w| ≤ {WEIGHT_MAX})")
            if np.abs(a["b_int"]).max(initial=0) > STATE_MAX:
                raise LensNetDeployError(f"layer {n.name}: bias does not fit the 24-bit state")
        elif n.op == "spike":
            theta = np.asarray(a["theta"])
            src = ir.nodes[n.inputs[0]]
            limit = 2**62 if src.op in ("avgpool", "attention") else STATE_MAX
            if np.abs(theta).max(initial=0) > limit:
                raise LensNetDeployError(f"layer {n.name}: threshold {int(np.abs(theta).max()):,} overflows "
                                         f"{'64' if limit > STATE_MAX else '24'} bits")
            if np.any(np.diff(theta, axis=1) < 0):
                raise LensNetDeployError(f"layer {n.name}: thresholds are not increasing with the count")


def simulate(int_graph: nir.NIRGraph, images: torch.Tensor, backend: str = "fast",
             lava_synapses: str = "own") -> SimResult:
    """Run an integer lensnet NIR graph on ``images`` (ImageNet-normalised B×3×H×W).

    ``fast``: exact integers carried in float32 (each node's type chosen from a
    static bound); ``reference``: int64 values, float64 kernels (exact below
    2^53); ``lava``: Lava's CPU simulator with our fixed_pt processes, one image
    at a time, the convolutions in our processes (``lava_synapses="own"``) or in
    Lava's ``Sparse``/``Conv`` (``"sparse"``/``"conv"``). All give the same integers.
    """
    if backend not in BACKENDS:
        raise LensNetDeployError(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)})")
    ir = from_nir(int_graph)
    if "quantized" not in ir.meta:
        raise LensNetDeployError("simulate needs an integer graph: run quantize first")
    check_integer_widths(ir)
    if backend == "lava":
        from .lava_sim import simulate_lava

        runs = [simulate_lava(ir, img, synapses=lava_synapses) for img in images]
        raw = tuple(torch.from_numpy(np.stack([r.raw[i] for r in runs])) for i in range(len(runs[0].raw)))
        scales = [torch.as_tensor(o.attrs["real_scale"]).view(1, -1, 1, 1) for o in ir.outputs()]
        counts = {k: torch.from_numpy(np.stack([r.spike_counts[k] for r in runs])) for k in runs[0].spike_counts}
        return SimResult(tuple(r.double() * s for r, s in zip(raw, scales)), raw, counts)
    with torch.no_grad():
        run = simulate_int(ir, images, fast=backend == "fast")
    return SimResult(run.logits, run.raw, run.spike_counts, run.observed_max)


def node_values(int_graph: nir.NIRGraph, image: torch.Tensor, backend: str,
                lava_synapses: str = "own") -> tuple[dict[str, np.ndarray], list[str]]:
    """Every node's integers for one image on ``backend`` (for layer-by-layer comparisons)."""
    ir = from_nir(int_graph)
    order = [n.name for n in ir if n.op not in ("input", "output")]
    x = image if image.dim() == 4 else image[None]
    if backend == "lava":
        from .lava_sim import simulate_lava

        return simulate_lava(ir, x[:1], keep=True, synapses=lava_synapses).values, order
    if backend not in BACKENDS:
        raise LensNetDeployError(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)})")
    run = simulate_int(ir, x[:1], fast=backend == "fast", keep=True)
    return {k: v[0].numpy() for k, v in run.values.items()}, order
