"""The Open Inference Protocol's gRPC modules, generated from inference.proto by `make proto`."""
