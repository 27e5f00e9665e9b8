"""PyTorch → NIR export, NIR interpreter, ONNX and quantization (lensnet_deploy.export)."""
