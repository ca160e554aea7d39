"""Argos beside other Python model servers on the same model: ``python -m benchmarks.peers``."""
