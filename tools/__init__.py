"""Developer tooling: local servers for tests, benchmarks and load tests."""
