"""Target chips and boards, read from ``hardware/targets/*.json`` (each figure with its source).

``load_target(name)`` gives a frozen :class:`Target`; ``quantize`` and
``compile`` take their widths from it (weights, neuron state, graded-spike
payloads), and the design rules (``rules``) check a graph against it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import LensNetDeployError

TARGET_DIR = Path(__file__).resolve().parent
CONV_WEIGHTS = ("shared", "dense")  # how a Conv's synapses are stored (Target.conv_weights)


def signed_max(bits: int) -> int:
    """The largest value of a signed ``bits``-bit integer."""
    return 2 ** (bits - 1) - 1


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    neuro_cores_per_chip: int
    embedded_cores_per_chip: int
    neurons_per_core: int
    neurons_per_chip: int
    synapses_per_chip: int
    weight_bits: int  # signed weight mantissa, sign included (8: −127..127 used symmetrically)
    state_bits: int  # neuron state (membranes, joins)
    graded_spike_bits: int  # payload of a graded spike; 0: binary spikes only
    # fixed-point formats of the neuro-core processes (Lava's bit-accurate models)
    lif_input_bits: int = 18  # signed synaptic input of a LIF neuron (shifted left by act_shift into u)
    act_shift: int = 6  # a_in << 6 and vth << 6
    vth_bits: int = 17  # unsigned threshold mantissa, one per process
    bias_mant_bits: int = 13  # signed per-neuron bias mantissa
    bias_exp_bits: int = 3  # unsigned per-neuron bias exponent
    decay_bits: int = 12  # unsigned current and voltage decays du, dv of a LIF process
    weight_exp_min: int = -8
    weight_exp_max: int = 7
    max_delay: int = 63  # synaptic delay of DelaySparse
    conv_param_max: int = 127  # int8 groups, stride, padding, kernel of Lava's Conv
    # what a neuro-core stores for a Conv process: "shared" (the kernel rows of the channels it holds)
    # or "dense" (one synapse per source-destination pair); cited in the file's sources
    conv_weights: str = "dense"
    message_bits: int = 24  # payload of a message from a neuro-core
    energy_pj: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def weight_max(self) -> int:
        return signed_max(self.weight_bits)

    @property
    def state_max(self) -> int:
        return signed_max(self.state_bits)

    @property
    def lif_input_max(self) -> int:
        return signed_max(self.lif_input_bits)

    @property
    def message_max(self) -> int:
        return signed_max(self.message_bits)

    @property
    def pre_shift_max(self) -> int:
        """The largest k of a LIF that reads ``floor(m / 2^k)`` of a wider membrane: an identity
        synapse of weight 2 at ``weight_exp = −k − 1`` (Loihi's mixed-sign mantissa drops a bit)."""
        return -self.weight_exp_min - 1

    @property
    def bias_mant_max(self) -> int:
        return signed_max(self.bias_mant_bits)

    @property
    def decay_max(self) -> int:
        return 2**self.decay_bits - 1  # unsigned

    @property
    def vth_max(self) -> int:
        return 2**self.vth_bits - 1  # unsigned

    @property
    def bias_exp_max(self) -> int:
        return 2**self.bias_exp_bits - 1  # unsigned

    @property
    def shares_conv_weights(self) -> bool:
        """Whether a Conv's kernel is stored once per core (the target file's ``conv_weights``)."""
        if self.conv_weights not in CONV_WEIGHTS:
            raise LensNetDeployError(f"target {self.name}: conv_weights {self.conv_weights!r} is not one of "
                                     f"{', '.join(CONV_WEIGHTS)}")
        return self.conv_weights == "shared"

    @property
    def synapses_per_core(self) -> float:
        return self.synapses_per_chip / self.neuro_cores_per_chip

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def known_targets() -> list[str]:
    return sorted(p.stem for p in TARGET_DIR.glob("*.json") if p.stem != "boards")


def load_target(target: str | Target) -> Target:
    """A target by name (``loihi2``, ``loihi1``) or the object itself."""
    if isinstance(target, Target):
        return target
    path = TARGET_DIR / f"{target}.json"
    if not path.exists():
        raise LensNetDeployError(f"unknown target {target!r} (known: {', '.join(known_targets())})")
    data = json.loads(path.read_text())
    fields = {f.name for f in dataclasses.fields(Target)}
    return Target(**{k: v for k, v in data.items() if k in fields})


def load_boards() -> dict[str, dict[str, Any]]:
    return json.loads((TARGET_DIR / "boards.json").read_text())


def board_capacity(board: dict[str, Any], target: Target) -> int:
    """Neuro-cores of a board (Hala Point publishes fewer than chips × 128)."""
    return int(board.get("neuro_cores", board["chips"] * target.neuro_cores_per_chip))
