"""The bundled demo's integer model, pinned: refactors must not change a single integer.

The digest covers the fast simulator's raw integer logits (int64) and every
spike count (uint8) of the zoo's lensnet-tiny on the twelve bundled ORSSD
samples at its native size (`quantize` depends on the weights alone, as in `run`).
It changes only with a new integer-semantics version (say which in the commit).
"""

import hashlib

import numpy as np
import torch
from conftest import SAMPLES

import lensnet_deploy as L
from lensnet_deploy.datasets import list_images, load_images

# docs/integer_semantics.md v3 and zoo lensnet-tiny v6 (256², snapped, int8 grid; sha256 2e93a0228…).
# Earlier: v3 with v5 at 224² (42c5db261…) 24267127… (41,079,706 spikes);
# v3 with v4 at 192² (358282452…) 9a6dc0ea… (31,046,684 spikes);
# v3 with v3.1 at 160² (2763aa1c…) 7b2148cc… (21,020,071 spikes); v2 with the v3 weights
# (99751df9…) d4ff0d26… (20,935,612 spikes); v2 with the v2 weights (115c7a55…) 3045a460… (20,848,413
# spikes); semantics v1 with the same weights 8bbbe28b… (20,796,423 spikes); v1 with the v1 weights at 128²
# (c4894dba…) 816b206c… (12,936,270 spikes); semantics v0 165d23f2…
DEMO_DIGEST = "65f7049957275353f6a8ef624e123d498986a560fcb1e660b4729a03ae3ac178"


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
    assert (layers, spikes) == (139, 57_382_916)
    assert digest == DEMO_DIGEST
