"""Third-party noise kept off the user's terminal, each message filtered where it comes from.

The command line calls :func:`install` unless ``-v/--verbose`` is given. Every filter names one
message of one library, so a new warning (ours or theirs) still shows: nothing here silences
warnings as a whole. What each filter hides, and why it is harmless:

* torch's ONNX exporter logs ``torchvision is not installed. Skipping torchvision::nms`` (and
  roi_align, roi_pool, deform_conv2d): it registers detection ops we never export.
* torch's pytree emits ``FutureWarning: `isinstance(treespec, LeafSpec)` is deprecated`` from its
  own exporter (``export --format onnx``); nothing of ours calls it.
* Lava's compiler warns ``Cannot import module '…' when searching ProcessModels`` when, looking
  for a process's models, it executes every module beside it as a loose file (ours, with relative
  imports, cannot be); our models are given to it explicitly (``exception_proc_model_map``).
"""

from __future__ import annotations

import logging
import warnings

# (logger name, start of the message) of third-party log records the user has no use for
LOG_RECORDS: tuple[tuple[str, str], ...] = (
    ("torch.onnx._internal.exporter._registration", "torchvision is not installed"),
)
# (message regex, category, module regex) for warnings.filterwarnings
WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, ""),
    (r"Cannot import module .* when searching ProcessModels", UserWarning, r"lava\.magma\.compiler"),
)


class _DropRecords(logging.Filter):
    """Drops a logger's records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def install() -> None:
    """Filter the known third-party messages (idempotent; imports none of those libraries)."""
    for message, category, module in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    by_logger: dict[str, tuple[str, ...]] = {}
    for name, prefix in LOG_RECORDS:
        by_logger[name] = (*by_logger.get(name, ()), prefix)
    for name, prefixes in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropRecords) for f in logger.filters):
            logger.addFilter(_DropRecords(prefixes))
