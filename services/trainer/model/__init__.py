"""The network (front / back / head), its export to a checked ONNX version, temperature scaling."""
