"""``run`` on a NIR graph with time: quantize → float and integer runs → Lava check → compile → report.

The output folder holds the integer graph (``model.q.nir``), the float and integer outputs
(``float.npz``, ``integer.npz``), the build (``build/``), ``metrics.json`` and ``report.html`` (raster
plots of input and output spikes, per-layer rates, float vs integer agreement, accuracy when
labels are given, the Lava check, resources and energy).
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import nir
import numpy as np

from .errors import LensNetDeployError

LAVA_SAMPLES = 4  # samples streamed through the Lava network as the check


def _prediction(values: np.ndarray, spiking: bool) -> np.ndarray:
    """A class per sample: the most spikes over time, or (a voltage readout) the largest mean value."""
    flat = values.reshape(values.shape[0], values.shape[1], -1).astype(np.float64)
    return (flat.sum(axis=1) if spiking else flat.mean(axis=1)).argmax(axis=1)


def _read_labels(path: Path, samples: int) -> np.ndarray:
    from .temporal_cli import load_npy

    labels = load_npy(path, "labels")
    if labels.ndim != 1 or labels.shape[0] != samples or labels.dtype.kind not in "iu":
        raise LensNetDeployError(f"{path}: labels must be {samples} integer classes (one per sample), got "
                                 f"{labels.dtype} of shape {labels.shape}")
    return labels


def run_temporal(graph_path: Path, inputs_path: Path, dt: float, method: str, reset: str | None,
                 labels_path: Path | None, out: Path, board: str = "auto", target: str = "loihi2",
                 log: Callable[[str], None] = print) -> dict:
    """The whole path for a graph with time; returns the metrics it writes."""
    from .atomic import write_text_atomic
    from .export.nir_io import read_nir, write_nir
    from .export.temporal import run_temporal as run_float
    from .hardware.build import compile_temporal
    from .hardware.integer import temporal as T
    from .hardware.integer.temporal_nir import to_nir
    from .hardware.model import TemporalModel
    from .temporal_cli import read_inputs, write_npz

    timings: dict[str, float] = {}

    def step(name: str, fn):
        t0 = time.perf_counter()
        value = fn()
        timings[name] = time.perf_counter() - t0
        log(f"{name}: {timings[name]:.1f} s")
        return value

    from .datasets import check_outputs_apart

    written = [out / n for n in ("model.q.nir", "float.npz", "integer.npz", "metrics.json", "report.html", "build")]
    check_outputs_apart(written, [("graph", graph_path), ("inputs", inputs_path), ("labels", labels_path)])
    graph: nir.NIRGraph = read_nir(graph_path)
    x = read_inputs(inputs_path)
    labels = _read_labels(labels_path, x.shape[0]) if labels_path is not None else None
    out.mkdir(parents=True, exist_ok=True)
    int_model = step("quantize", lambda: T.quantize_temporal(graph, x, dt, method, reset))
    model = TemporalModel(int_model)
    write_nir(to_nir(int_model), out / "model.q.nir")
    flt = step("float reference", lambda: run_float(graph, x, dt, method, reset, record_voltages=True))
    run = step("integer (fast simulator)", lambda: T.run_fast(int_model, x))
    write_npz(out / "float.npz", {k: v.numpy() for k, v in flt.outputs.items()})
    write_npz(out / "integer.npz", {**run.outputs, "latency": np.array(int_model.latency)})
    few = x[:LAVA_SAMPLES]
    lava = step(f"Lava check ({len(few)} samples through one network)", lambda: model.simulate(few, "lava"))
    fast_few = T.run_fast(int_model, few)
    lava_equal = {n: bool(np.array_equal(lava.values[n], fast_few.values[n])) for n in int_model.layers}
    build = step("compile", lambda: compile_temporal(model, target, board, inputs=x))
    build.save(out / "build")

    layers = []
    for name, layer in int_model.layers.items():
        if layer.spiking:
            f, i = flt.spikes[name].numpy(), run.values[name]
            layers.append({"layer": name, "kind": layer.kind, "neurons": layer.size,
                           "float_rate": float(f.mean()), "integer_rate": float(i.mean()),
                           "spikes_equal": float(np.mean(f == i)),
                           "count_error": float(np.abs(i.sum(axis=1) - f.sum(axis=1)).mean()
                                                / max(1e-12, float(f.sum(axis=1).mean())))})
    outputs = {}
    for o, src in int_model.outputs.items():
        layer = int_model.layers[src]
        f = flt.outputs[o].numpy()
        i = run.outputs[o]
        entry = {"layer": src, "spiking": layer.spiking}
        if layer.spiking:
            entry["count_error"] = float(np.abs(i.sum(axis=1) - f.sum(axis=1)).mean()
                                         / max(1e-12, float(f.sum(axis=1).mean())))
        else:  # voltages: integer units × σ against the float values
            real = i.reshape(i.shape[0], i.shape[1], -1) * np.asarray(layer.scale)
            ref = f.reshape(real.shape)
            entry["max_abs_error"] = float(np.abs(real - ref).max())
            entry["max_abs_value"] = float(np.abs(ref).max())
        f_pred, i_pred = _prediction(f, layer.spiking), _prediction(i, layer.spiking)
        entry["prediction_agreement"] = float(np.mean(f_pred == i_pred))
        if labels is not None:
            entry["float_accuracy"] = float(np.mean(f_pred == labels))
            entry["integer_accuracy"] = float(np.mean(i_pred == labels))
        outputs[o] = entry
    metrics = {"graph": str(graph_path), "inputs": list(x.shape), "dt": dt, "method": method,
               "latency": int_model.latency, "layers": layers, "outputs": outputs,
               "lava": {"samples": len(few), "period": int(build.plan.period) if build.plan else None,
                        "equal": all(lava_equal.values()), "layers": lava_equal},
               "build": build.summary(), "energy": build.energy.to_dict() if build.energy else None,
               "timings_s": timings}
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1, default=float) + "\n")
    write_text_atomic(out / "report.html", _report(metrics, x, flt, run, int_model, build))
    return metrics


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _raster(ax, spikes: np.ndarray, title: str) -> None:
    from matplotlib.ticker import MaxNLocator

    flat = spikes.reshape(spikes.shape[0], -1)
    t, n = np.nonzero(flat)
    size = 60 if flat.shape[1] <= 32 else 12 if flat.shape[1] <= 256 else 3
    ax.scatter(t, n, s=size, marker="|", linewidths=1.2, color="#1f4e9c")
    ax.set(title=title, xlabel="step", ylabel="neuron", xlim=(-0.5, spikes.shape[0] - 0.5),
           ylim=(-0.5, flat.shape[1] - 0.5))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _report(m: dict, x: np.ndarray, flt, run, model, build) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    fig, ax = plt.subplots(figsize=(7, 2.6))
    _raster(ax, x[0], "input spikes, sample 0")
    figs.append(("Input", _png(fig)))
    for o, src in model.outputs.items():
        fig, axes = plt.subplots(1, 2, figsize=(10, 2.6), sharey=True)
        if model.layers[src].spiking:
            _raster(axes[0], flt.outputs[o].numpy()[0], f"{o}: float spikes")
            _raster(axes[1], run.outputs[o][0], f"{o}: integer spikes")
        else:
            f = flt.outputs[o].numpy()[0].reshape(x.shape[1], -1)
            i = run.outputs[o][0].reshape(x.shape[1], -1) * np.asarray(model.layers[src].scale)
            axes[0].plot(f)
            axes[1].plot(i)
            axes[0].set(title=f"{o}: float voltage", xlabel="step")
            axes[1].set(title=f"{o}: integer voltage × σ", xlabel="step")
        fig.tight_layout()
        figs.append((f"Output {o}, sample 0", _png(fig)))
    if m["layers"]:
        fig, ax = plt.subplots(figsize=(7, 2.8))
        names = [r["layer"] for r in m["layers"]]
        pos = np.arange(len(names))
        ax.bar(pos - 0.2, [r["float_rate"] for r in m["layers"]], 0.4, label="float")
        ax.bar(pos + 0.2, [r["integer_rate"] for r in m["layers"]], 0.4, label="integer")
        ax.set_xticks(pos, names)
        ax.set(ylabel="spikes per neuron per step", title="firing rates per layer")
        ax.legend()
        fig.tight_layout()
        figs.append(("Firing rates", _png(fig)))
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(r['layer'])}</td><td>{esc(r['kind'])}</td><td>{r['neurons']:,}</td>"
                   f"<td>{r['float_rate']:.4f}</td><td>{r['integer_rate']:.4f}</td>"
                   f"<td>{100 * r['spikes_equal']:.2f} %</td><td>{100 * r['count_error']:.2f} %</td></tr>"
                   for r in m["layers"])
    outs = []
    for o, e in m["outputs"].items():
        err = f"count error {100 * e['count_error']:.2f} %" if e["spiking"] else \
            f"max |Δv| {e['max_abs_error']:.4g} (of max |v| {e['max_abs_value']:.4g})"
        acc = f"; accuracy float {100 * e['float_accuracy']:.1f} %, integer {100 * e['integer_accuracy']:.1f} %" \
            if "float_accuracy" in e else ""
        outs.append(f"<li>{esc(o)} (layer {esc(e['layer'])}): {err}; predictions agree on "
                    f"{100 * e['prediction_agreement']:.1f} % of samples{acc}</li>")
    lava = m["lava"]
    lava_line = (f"Lava (Loihi2SimCfg fixed_pt, Lava's own LIFReset, Sparse, DelaySparse): {lava['samples']} samples "
                 f"streamed through one network {lava['period']} steps apart: "
                 + ("<b>equal to the fast simulator on every layer, every step</b>" if lava["equal"] else
                    "<b>DIFFERENT</b> from the fast simulator on " +
                    ", ".join(esc(k) for k, v in lava["layers"].items() if not v)))
    b = m["build"]
    energy = html.escape(build.energy.format()) if build.energy else "(no inputs)"
    timings = ", ".join(f"{esc(k)} {v:.1f} s" for k, v in m["timings_s"].items())
    images = "".join(f"<h3>{esc(t)}</h3><img src='{src}' style='max-width:100%'>" for t, src in figs)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>lensnet-deploy run: {esc(m['graph'])}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}pre{{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f6f6;
padding:.5em}}</style></head><body>
<h1>{esc(Path(m['graph']).name)} on Loihi 2</h1>
<p>{m['inputs'][0]} samples of {m['inputs'][1]} steps, input {esc('×'.join(map(str, m['inputs'][2:])))}; dt {m['dt']}
s, {esc(m['method'])} discretisation; integer latency {m['latency']} chip steps. Timings: {timings}.</p>
<h2>Float vs integer</h2><ul>{''.join(outs)}</ul>
<table><tr><th>layer</th><th>kind</th><th>neurons</th><th>float rate</th><th>integer rate</th><th>spikes equal</th>
<th>count error</th></tr>{rows}</table>
<h2>Lava check</h2><p>{lava_line}</p>
<h2>Resources on {esc(b['board'])}</h2><p>{b['neurons']:,} neurons, {b['synapses']:,} synapses, {b['cores']:,}
neuro-core(s) on {b['chips']} {esc(b['target'])} chip(s); {b['processes']} processes, every one on the neuro-cores a
Lava library process (full table: build/resources.txt).</p>
<h2>Energy</h2><pre>{energy}</pre>
<h2>Plots</h2>{images}
</body></html>
"""
