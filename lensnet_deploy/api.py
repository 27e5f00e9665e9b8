"""The public integer pipeline on NIR artifacts: ``quantize``, ``prepare``, ``simulate``.

float NIR ──quantize──► integer NIR ──prepare──► IntegerModel ──simulate(backend)──► SimResult
                                                              └─compile(target, board)──► Build
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np
import torch

from .errors import DatasetError, LensNetDeployError
from .export.from_nir import from_nir
from .export.ir_exec import run_ir
from .hardware.integer.int_nir import to_int_nir
from .hardware.integer.ops import IntSpike, SigmoidTable
from .hardware.integer.quantize import quantize_ir
from .hardware.integer.result import SimResult
from .hardware.model import BACKENDS, IntegerModel
from .hardware.target.chips import Target
from .normalization import from_pixels, to_pixels

QUANTIZE_OPTIONS = ("per_channel", "strict")

__all__ = ["BACKENDS", "IntegerModel", "QuantizeReport", "SimResult", "prepare", "quantize", "quantize_with_report",
           "simulate"]


@dataclass
class QuantizeReport:
    """Per-layer bounds and SQNR; on calibration images: spike agreement with the float
    model, saturation counts and (with masks) float vs integer SOD metrics."""

    layers: list[dict]
    spike_agreement: dict[str, float]
    saturation: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    per_image_delta_s: list[float] = field(default_factory=list)  # S integer − S float, per calibration image
    image_names: list[str] = field(default_factory=list)  # the calibration images' file names, when known

    def format(self, top: int = 8) -> str:
        lines = ["layer                                              bits  SQNR dB   bound      observed"]
        for row in sorted(self.layers, key=lambda r: -r["bound"] / r["limit"])[:top]:
            sqnr = f"{row['sqnr_db']:7.1f}" if row.get("sqnr_db") is not None else "      -"
            bits = row.get("weight_bits", row["bits"])
            lines.append(f"{row['layer'][:50]:<50} {bits:>4} {sqnr} {row['bound']:>9,} "
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
            from .metrics import format_table

            lines.append(f"float vs integer on the {sat.get('images', '')} calibration images with masks:")
            lines.append(format_table(self.metrics))
        if self.per_image_delta_s:
            d = np.abs(np.array(self.per_image_delta_s))
            worst = int(d.argmax())
            name = self.image_names[worst] if len(self.image_names) == len(d) else f"image {worst + 1}"
            lines.append(f"image by image, S integer − S float: mean |ΔS| {d.mean():.4f}, worst "
                         f"{self.per_image_delta_s[worst]:+.4f} ({name}); "
                         f"{int((d <= 0.01).sum())} of {len(d)} images within ±0.01")
        return "\n".join(lines)


def quantize(graph: nir.NIRGraph, images: torch.Tensor | None = None, target: str | Target = "loihi2",
             *, dt: float | None = None, method: str = "euler", reset: str | None = None,
             **options) -> nir.NIRGraph:
    """Float lensnet NIR graph → integer NIR graph (docs/integer_semantics.md), within the
    widths of ``target`` (a name or a ``Target``).

    Options: ``per_channel`` (default True: one shift per channel of each
    residual stream; False: one per stream) and ``strict`` (fail instead of
    coarsening a stream to fit the state width).

    Nothing is calibrated: shifts come from static worst-case bounds, which hold for every
    input, so the integer graph depends on the weights alone (and its 24-bit state is proven,
    not observed). ``images`` (optional: B×3×H×W ImageNet-normalised floats, torchvision's
    normalisation or ours, or uint8 pixels B×3×H×W / B×H×W×3) are only checked against the
    graph's input, so that images of another size, or floats that are not whole pixels, fail
    here in one line rather than in ``simulate``; what images show (observed maxima, spike
    agreement with the float model, saturations, metrics) is the report of
    ``quantize_with_report``.

    A NIR graph with time (LIF, CubaLIF, IF, LI, … from snnTorch, Norse, SpikingJelly: docs/nir.md)
    needs ``dt`` (seconds per step) and ``images`` as calibration input sequences B×T×(input shape);
    ``method`` is ``euler`` or ``exact``, ``reset`` overrides the graph's; ``weight_bits`` (8 or 16,
    default 16) is an option. The result is its integer model in Loihi 2's CUBA formats."""
    from .export.temporal import is_temporal

    if is_temporal(graph):
        from .hardware.integer.temporal import quantize_temporal
        from .hardware.integer.temporal_nir import to_nir

        if dt is None or images is None:
            raise LensNetDeployError("a NIR graph with time needs dt and calibration input sequences (B×T×shape)")
        unknown = set(options) - {"weight_bits"}
        if unknown:
            raise LensNetDeployError(f"unknown options for a graph with time: {', '.join(sorted(unknown))}")
        return to_nir(quantize_temporal(graph, np.asarray(images), dt, method, reset, **options))
    _check_images(graph, images)
    return quantize_with_report(graph, None, target=target, **options)[0]


def _check_images(graph: nir.NIRGraph, images: torch.Tensor | np.ndarray | None) -> torch.Tensor | None:
    """The uint8 pixels (B×3×H×W) of ``images`` (``normalization.to_pixels``); a
    ``DatasetError`` unless they are at the graph's input size and whole pixels."""
    if images is None:
        return None
    from .export import convention

    size = (convention.model_info(graph) or {}).get("input_size")
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) == 4 and getattr(images, "dtype", None) in (torch.uint8, np.uint8) and shape[1] != 3 \
            and shape[3] == 3:
        shape = (shape[0], 3, shape[1], shape[2])  # B×H×W×3 pixels
    if len(shape) != 4 or shape[0] == 0 or shape[1] != 3 or (size and list(shape[2:]) != [int(s) for s in size]):
        want = f"3×{int(size[0])}×{int(size[1])}" if size else "3×H×W"
        got = "×".join(map(str, getattr(images, "shape", ()))) or type(images).__name__
        raise DatasetError(f"images of shape {got} do not fit the graph: it takes B×{want}")
    return to_pixels(images)


def quantize_with_report(graph: nir.NIRGraph, calibration_images: torch.Tensor | None = None,
                         masks: list[np.ndarray] | None = None, batch_size: int = 2,
                         target: str | Target = "loihi2", **options) -> tuple[nir.NIRGraph, QuantizeReport]:
    """``quantize`` plus its report; ``masks`` (one per calibration image) add the float vs
    integer SOD metrics. Images go through both models ``batch_size`` at a time (the float
    model's every layer is kept for the spike comparison).

    Images as ``quantize`` takes them. Both models read the same uint8 pixels
    (``normalization.to_pixels``, exact or refused before anything runs): the integer model
    those pixels, the float graph ``normalization.from_pixels`` of them (this project's rounded
    mean, so both pad with the pixel ``PIXEL_OFFSET``). A torchvision-normalised tensor is thus
    compared as the image it holds, not with the 0.28–0.47 pixel levels of shift the integer input cannot
    carry; a ``load_images`` tensor reaches the float graph bit for bit as given."""
    unknown = set(options) - set(QUANTIZE_OPTIONS)
    if unknown:
        raise LensNetDeployError(f"unknown quantize options: {', '.join(sorted(unknown))} "
                                 f"(known: {', '.join(QUANTIZE_OPTIONS)})")
    calibration_images = _check_images(graph, calibration_images)
    ir = from_nir(graph)
    if masks is not None and (calibration_images is None or len(masks) != len(calibration_images)):
        raise LensNetDeployError("masks need one calibration image each")
    q, bounds = quantize_ir(ir, target=target, **options)
    rows = [dict(r) for r in bounds.rows]
    report = QuantizeReport(rows, {}, {"weights_clipped": sum(r.get("clipped", 0) for r in rows),
                                       "state_over_bound": sum(r["bound"] > r["limit"] for r in rows)})
    if calibration_images is not None:
        _calibration_report(ir, IntegerModel(q), calibration_images, masks, batch_size, report)
    return to_int_nir(q), report


def _calibration_report(ir, model: IntegerModel, images: torch.Tensor, masks: list[np.ndarray] | None,
                        batch_size: int, report: QuantizeReport) -> None:
    """Observed maxima, spike agreement, saturations and metrics, batch by batch."""
    from .metrics import METRIC_KEYS, SODMetrics
    from .predict import saliency_map

    q = model.ir
    sigmoids = q.of(SigmoidTable)
    gate_inputs = [n.inputs[0] for n in sigmoids]
    spikes = [n.name for n in q.of(IntSpike)]
    observed: dict[str, int] = {}
    equal = dict.fromkeys(spikes, 0)
    sat = dict(neurons=0, at_top_integer=0, at_top_float=0, gate_beyond_table=0, gate_inputs=0, images=len(images))
    scores = {"float": SODMetrics(), "integer": SODMetrics()} if masks is not None else {}
    p1 = ir.outputs()[0].name
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]  # uint8 pixels
        run = model.fast(x, keep=gate_inputs, observe=True)
        floats = run_ir(ir, from_pixels(x), keep=True)
        for name, value in run.observed_max.items():
            observed[name] = max(observed.get(name, 0), value)
        for name in spikes:
            counts, top = run.spike_counts[name].long(), q.nodes[name].op.D  # type: ignore[attr-defined]
            reference = floats[name].round().long()
            equal[name] += int((reference == counts).sum())
            sat["neurons"] += counts.numel()
            sat["at_top_integer"] += int((counts == top).sum())
            sat["at_top_float"] += int((reference == top).sum())
        for n in sigmoids:
            op: SigmoidTable = n.op  # type: ignore[assignment]
            idx = run.values[n.inputs[0]][:, :, 0, 0] >> torch.as_tensor(op.z_shift).view(1, -1)
            beyond = (idx < torch.as_tensor(op.z_lo).view(1, -1)) | (idx > torch.as_tensor(op.z_hi).view(1, -1))
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
        f, i = (scores[k].per_image_smeasure() for k in ("float", "integer"))
        report.per_image_delta_s = [b - a for a, b in zip(f, i)]


def prepare(int_graph: IntegerModel | nir.NIRGraph) -> IntegerModel:
    """Read and check an integer graph once; ``simulate`` and ``compile`` accept the result."""
    return IntegerModel.of(int_graph)


def simulate(int_graph: IntegerModel | nir.NIRGraph, images: torch.Tensor, backend: str = "fast",
             cluster: str | None = None, batch_size: int = 8) -> SimResult:
    """Run an integer lensnet graph (a NIR graph or a prepared ``IntegerModel``) on ``images``:
    uint8 pixels (B×3×H×W or B×H×W×3) or ImageNet-normalised floats B×3×H×W, normalised
    torchvision's way (``Normalize(IMAGENET_MEAN, IMAGENET_STD)`` on ``ToTensor()``) or this
    project's (``load_images``: the mean rounded to whole pixel levels). The integer model reads
    the exact uint8 pixels either tensor holds (``normalization.to_pixels``); a float tensor that
    holds no uint8 pixels under either normalisation (resized or changed after normalising, another
    mean or scale) is a ``DatasetError`` before anything runs. Compare with the float model on
    ``normalization.float_input(images)``: the same pixels, padded with the same pixel.

    ``fast``: exact integers carried in float32 (each node's type chosen from a
    static bound); ``reference``: the int64 numpy oracle (slow, independent);
    ``lava``: the Loihi 2 network of Lava library processes (``lava_network``) on Lava's CPU
    simulator, images streamed through it one per step; pass a prepared ``IntegerModel`` to
    keep the network between calls. All give the same integers.

    ``cluster``: ``"local"``, ``"local:N"`` or a Ray cluster's address; batches of
    ``batch_size`` images spread over its workers, each building the backend once
    (``lensnet_deploy.cluster``). The merged result equals a one-process run.
    """
    if isinstance(int_graph, nir.NIRGraph):
        from .hardware.integer.temporal_nir import from_nir as temporal_from_nir
        from .hardware.integer.temporal_nir import is_temporal_integer

        if is_temporal_integer(int_graph):  # a graph with time: B×T×(input shape) sequences in
            return _simulate_temporal(temporal_from_nir(int_graph), images, backend)
    if backend not in BACKENDS:
        raise LensNetDeployError(f"unknown backend {backend!r} (available: {', '.join(BACKENDS)})")
    model = prepare(int_graph)
    images = to_pixels(images)
    if tuple(images.shape[2:]) != model.input_size:
        h, w = model.input_size
        raise DatasetError(f"images of {images.shape[2]}×{images.shape[3]} pixels do not fit the graph: it "
                           f"takes B×3×{h}×{w}")
    if cluster is not None:
        from .cluster import simulate_on_cluster

        return simulate_on_cluster(model, images, backend, cluster, batch_size)
    with torch.no_grad():
        return model.simulate(images, backend)


def _simulate_temporal(model, inputs, backend: str):
    """An integer model of a graph with time on ``fast``, ``reference`` or ``lava`` (Lava's own
    library processes, the samples streamed through one network): every Output node's values and
    every layer's spikes per step (``IntRun``, aligned with the float reference)."""
    from .hardware.model import TemporalModel

    return TemporalModel(model).simulate(inputs, backend)
