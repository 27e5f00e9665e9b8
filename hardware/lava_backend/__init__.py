"""Lava backend: integer IR → Lava processes with fixed_pt numpy models (no import side effects).

Lava imports every module beside a Process class while compiling, so this
package holds only the processes, their models, the integer kernels they call
and the compiler; nothing here runs at import time.
"""

# Lava loads each module here on its own (as a top-level module) while looking
# for ProcessModels, so the modules import each other by absolute name.
