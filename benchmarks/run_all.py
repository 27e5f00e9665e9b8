"""Every ratio the issues ask for, measured in one run (run it on an idle machine).

- export: full LENS-Net at 352² to a NIR file, time and peak memory (targets 60 s, 4 GB);
- fast integer simulator vs float PyTorch forward, full LENS-Net at 352², batch 1 and 8 (target ≤ 1.5×);
- the Loihi 2 network on Lava's CPU simulator: build time, steady-state seconds per image (tiny and full at 128²).
- Lava on a local Ray cluster: throughput with 1 and 2 workers, tiny at 128² on 16 images.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    for script, extra in (("export_benchmark.py", []), ("simulator_benchmark.py", [])):
        print(f"== {script} ==", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *extra], check=True)
    print("== lava_benchmark.py ==", flush=True)
    subprocess.run([sys.executable, str(HERE / "lava_benchmark.py"), "--full"], check=True)
    print("== cluster_benchmark.py ==", flush=True)
    subprocess.run([sys.executable, str(HERE / "cluster_benchmark.py")], check=True)


if __name__ == "__main__":
    main()
