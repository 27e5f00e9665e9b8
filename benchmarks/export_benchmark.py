"""Export benchmark: full LENS-Net at 352² → NIR file; wall time and peak memory.

Runs the export in a fresh child process so the peak resident memory is the
export's own (plus the interpreter and torch baseline, which we also print).
Targets (issue "Export"): ≤ 60 s and ≤ 4 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[4]))
from lensnet_deploy.model_zoo import LensNet, variant_config
from lensnet_deploy.model_zoo.random_weights import randomize_
from lensnet_deploy.export import export_nir, write_nir
model = randomize_(LensNet(variant_config(sys.argv[1])), seed=0).eval()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
graph = export_nir(model, (int(sys.argv[2]), int(sys.argv[2])))
t1 = time.perf_counter()
write_nir(graph, sys.argv[3])
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"graph_s": t1 - t0, "write_s": t2 - t1, "total_s": t2 - t0, "peak_rss_mb": peak / 1024,
                  "baseline_rss_mb": base / 1024, "nodes": len(graph.nodes), "edges": len(graph.edges)}))
"""


def measure(variant: str, size: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.nir"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, variant, str(size), str(out), str(threads)],
                              capture_output=True, text=True, check=True)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["file_mb"] = out.stat().st_size / 2**20
        result["process_s"] = time.perf_counter() - start
        result["child_max_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="lensnet")
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    r = measure(args.variant, args.size, args.threads)
    print(f"export {args.variant} at {args.size}²: {r['nodes']} NIR nodes, {r['edges']} edges, "
          f"file {r['file_mb']:.1f} MB")
    print(f"  time   {r['total_s']:.1f} s (graph {r['graph_s']:.1f} s + write {r['write_s']:.1f} s); "
          f"target 60 s → ratio {r['total_s'] / 60:.2f}")
    print(f"  memory peak {r['peak_rss_mb']:.0f} MB resident (torch+model baseline {r['baseline_rss_mb']:.0f} MB); "
          f"target 4096 MB → ratio {r['peak_rss_mb'] / 4096:.2f}")


if __name__ == "__main__":
    main()
