"""Integer semantics, simulators, the Lava backend and Loihi targets (lensnet_deploy.hardware)."""
