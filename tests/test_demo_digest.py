"""The bundled demo's integer model, pinned: refactors must not change a single integer.

The digest covers the fast simulator's raw integer logits (int64) and every
spike count (uint8) of the zoo's lensnet-tiny on the twelve bundled ORSSD
samples at its native size, calibrated on the same images as `run` does.
It changes only with a new integer-semantics version (say which in the commit).
"""

import hashlib

import numpy as np
import torch
from conftest import SAMPLES

import lensnet_deploy as L
from lensnet_deploy.datasets import list_images, load_images

# docs/integer_semantics.md v1 (v0 was 165d23f2…, 12,952,011 spikes), zoo lensnet-tiny sha256 c4894dba…
DEMO_DIGEST = "816b206c7d09c72b1a7431a2e90452f1a918ff6f2eb9a1228249790a69b6b512"


def demo_digest() -> tuple[str, int, int]:
    model = L.load_lensnet("lensnet-tiny")
    x = load_images(list_images(SAMPLES / "Image"), model.input_size)
    q = L.quantize(L.export_nir(model, model.input_size), x[:16])
    run = L.simulate(q, x)
    h = hashlib.sha256()
    for t in run.raw:
        h.update(np.ascontiguousarray(t.numpy().astype(np.int64)).tobytes())
    for name in sorted(run.spike_counts):
        h.update(name.encode())
        h.update(np.ascontiguousarray(run.spike_counts[name].numpy().astype(np.uint8)).tobytes())
    return h.hexdigest(), len(run.spike_counts), sum(int(v.sum()) for v in run.spike_counts.values())


def test_demo_integers_are_pinned():
    with torch.no_grad():
        digest, layers, spikes = demo_digest()
    assert (layers, spikes) == (139, 12_936_270)
    assert digest == DEMO_DIGEST
