"""Integer semantics, quantization, simulators, Lava backend, Loihi targets (lensnet_deploy.hardware)."""
