"""Benchmarks of Argos on this machine: ``python -m benchmarks --out reports/bench``."""
