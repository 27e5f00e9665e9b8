"""Our own Lava processes (embedded cores and the host) and their ProcessModels, nothing else.

Lava imports every module in this folder on its own while it looks for ProcessModels,
so the modules import each other by absolute name and do nothing at import time.
"""
