"""The integer model: operations, semantics, static bounds, quantization, the integer NIR dialect, the
int64 reference and the fast simulator. Nothing here knows about Loihi's processes or Lava."""
