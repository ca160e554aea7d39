"""Deployment files for Argos (Kubernetes, docker compose, Prometheus) and their validator."""
