"""Load tests: Locust scenarios against a running Argos server and a gate on their SLOs.

Run ``python -m loadtests --url http://127.0.0.1:3000`` (see loadtests/README.md).
"""
