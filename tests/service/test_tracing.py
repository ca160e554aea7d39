"""Requests are traced only when a tracing exporter is configured for the service."""

from __future__ import annotations

from opentelemetry.util.http import parse_excluded_urls

from service.tracing import tracing_options

URLS = (
    "http://127.0.0.1:3000/classify?top_k=3&groups=true",
    "http://argos.example:8080/v2/models/pets/versions/20261120/infer",
    "http://[::1]:3000/",
)


def test_without_an_exporter_every_url_is_left_untraced() -> None:
    for config in (
        {},
        {"services": {"argos": {"tracing": {"sample_rate": 1.0}}}},
        {"services": {"other": {"tracing": {"exporter_type": "otlp"}}}},
        {"tracing": {"exporter_type": None}, "services": {"argos": {"workers": 2}}},
    ):
        options = tracing_options("argos", config)
        excluded = parse_excluded_urls(options["excluded_urls"])  # as BentoML reads it
        assert all(excluded.url_disabled(url) for url in URLS), config


def test_with_an_exporter_the_configuration_applies_as_given() -> None:
    config = {"services": {"argos": {"tracing": {"exporter_type": "otlp", "sample_rate": 0.1}}}}
    assert tracing_options("argos", config) == {}
