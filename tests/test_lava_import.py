"""Importing lensnet_deploy makes lava-nc 0.10 run on Python 3.11 (no shim by hand)."""

import subprocess
import sys

SCRIPT = """
import numpy as np
import lensnet_deploy
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.dense.process import Dense
from lava.proc.io.source import RingBuffer
from lava.proc.lif.process import LIF
src = RingBuffer(data=np.ones((1, 5), dtype=np.int32))
dense = Dense(weights=np.array([[3]]))
lif = LIF(shape=(1,), du=4095, dv=0, vth=100000)
src.s_out.connect(dense.s_in)
dense.a_out.connect(lif.a_in)
try:
    lif.run(condition=RunSteps(num_steps=5), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    print(int(lif.u.get()[0]), int(lif.v.get()[0]))
finally:
    lif.stop()
"""


def test_lava_fixed_point_network_runs_after_importing_the_package():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # u = a_in << 6 = 192 each step; Dense delays one step, so v sums 4 of them.
    assert proc.stdout.split() == ["192", str(4 * 192)]


def test_lava_dl_slayer_imports_through_the_helper():
    code = "from lensnet_deploy.lava_compat import import_slayer; s = import_slayer(); print(s.__name__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("lava.lib.dl.slayer")
