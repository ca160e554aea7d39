"""Argos's gRPC protocol: ``inference.proto`` and the modules protoc generates from it
(``scripts/protos``), wire-compatible with the Open Inference Protocol's clients."""
