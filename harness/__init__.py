"""Test and benchmark harness: real Argos servers on loopback."""
