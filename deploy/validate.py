"""Offline validation of the deployment files in ``deploy/``.

Checks, without a cluster or a Docker engine:

* every Kubernetes manifest under ``kubernetes/`` against the JSON schemas bundled with
  ``kubernetes-validate``, in strict mode (unknown fields are errors), for each version in
  ``KUBERNETES_VERSIONS``;
* every ``kustomization.yaml`` lists files that exist, every manifest is listed by one,
  and within each kustomization the resources reference each other correctly (selectors,
  the HPA target, the ConfigMap, the Service's target port);
* ``docker-compose.yaml`` and ``prometheus/prometheus.yml`` have the expected structure.

Run ``python -m deploy.validate [DEPLOY_DIR]``; the exit status is 1 when any check fails.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate.utils import VersionNotSupportedError

DEPLOY_DIR = Path(__file__).resolve().parent
# The oldest Kubernetes release the manifests target and the newest schema bundled with
# kubernetes-validate 1.37.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
KUSTOMIZATION = "kustomization.yaml"
# Kustomization fields this validator accepts. `images` only swaps image references, which
# no check here depends on; anything else (patches, namePrefix, ...) would change the
# applied objects without being checked.
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "images"}
ARGOS_SERVICE = "argos"
PROMETHEUS_SERVICE = "prometheus"
ARGOS_PORT = 3000
METRICS_PATH = "/metrics"
PROMETHEUS_CONFIG_MOUNT = "/etc/prometheus/prometheus.yml"

Resource = dict[str, Any]


class ManifestError(Exception):
    """A deployment file failed validation."""


def load_documents(path: Path) -> list[Resource]:
    """Parse every non-empty YAML document of ``path``; each must be a mapping."""
    try:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: cannot read YAML: {exc}") from exc
    for index, doc in enumerate(documents):
        if not isinstance(doc, dict):
            raise ManifestError(
                f"{path}: document {index} is a {type(doc).__name__}, not a mapping"
            )
    if not documents:
        raise ManifestError(f"{path}: no YAML document")
    return documents


def load_document(path: Path) -> Resource:
    """Parse a YAML file that holds exactly one mapping."""
    documents = load_documents(path)
    if len(documents) != 1:
        raise ManifestError(f"{path}: expected one YAML document, found {len(documents)}")
    return documents[0]


def describe(resource: Resource) -> str:
    """``Kind/name`` of a resource, for messages."""
    name = resource.get("metadata", {}).get("name", "<unnamed>")
    return f"{resource.get('kind', '<no kind>')}/{name}"


def kubernetes_manifests(kubernetes_dir: Path) -> list[Path]:
    """All Kubernetes manifests below ``kubernetes_dir``, kustomizations excluded."""
    return sorted(p for p in kubernetes_dir.rglob("*.yaml") if p.name != KUSTOMIZATION)


def kustomization_dirs(kubernetes_dir: Path) -> list[Path]:
    """Every directory below ``kubernetes_dir`` (inclusive) that holds a kustomization."""
    return sorted(p.parent.resolve() for p in kubernetes_dir.rglob(KUSTOMIZATION))


def validate_manifest(path: Path, versions: Iterable[str] = KUBERNETES_VERSIONS) -> list[Resource]:
    """Validate each resource in ``path`` against the strict schemas of ``versions``."""
    resources = load_documents(path)
    for resource in resources:
        for version in versions:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(part) for part in exc.path) or "<root>"
                raise ManifestError(
                    f"{path}: {describe(resource)} is invalid for Kubernetes {version} "
                    f"at {where}: {exc.message}"
                ) from exc
            except (
                kubernetes_validate.SchemaNotFoundError,
                kubernetes_validate.InvalidSchemaError,
                VersionNotSupportedError,
            ) as exc:
                raise ManifestError(f"{path}: {describe(resource)}: {exc.message}") from exc
            except KeyError as exc:
                raise ManifestError(f"{path}: {describe(resource)} lacks {exc}") from exc
    return resources


def kustomization_resources(directory: Path) -> list[Path]:
    """Resolved ``resources`` of a kustomization: manifest files and base directories."""
    kustomization_path = directory / KUSTOMIZATION
    kustomization = load_document(kustomization_path)
    if kustomization.get("kind") != "Kustomization":
        raise ManifestError(f"{kustomization_path}: kind must be Kustomization")
    unsupported = sorted(set(kustomization) - KUSTOMIZATION_FIELDS)
    if unsupported:
        raise ManifestError(
            f"{kustomization_path}: uses {', '.join(unsupported)}, which this offline check "
            "does not render; keep kustomizations to `resources` (and `images`)"
        )
    resolved: list[Path] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if not (target.is_file() or (target / KUSTOMIZATION).is_file()):
            raise ManifestError(
                f"{kustomization_path}: resource {entry!r} is neither a file nor a "
                "directory with a kustomization.yaml"
            )
        resolved.append(target)
    return resolved


def kustomization_files(directory: Path) -> list[Path]:
    """Manifest files a kustomization renders, following its base directories."""
    files: list[Path] = []
    for target in kustomization_resources(directory):
        files.extend(kustomization_files(target) if target.is_dir() else [target])
    return files


def root_kustomizations(kubernetes_dir: Path) -> list[Path]:
    """Kustomizations meant for ``kubectl apply -k``: those no other one uses as a base."""
    directories = kustomization_dirs(kubernetes_dir)
    bases = {t for d in directories for t in kustomization_resources(d) if t.is_dir()}
    return [d for d in directories if d.resolve() not in bases]


def render_kustomization(directory: Path) -> list[Resource]:
    """Resources ``kubectl apply -k directory`` would create; duplicates are errors."""
    resources: list[Resource] = []
    seen: set[str] = set()
    for path in kustomization_files(directory):
        for resource in load_documents(path):
            key = describe(resource)
            if key in seen:
                raise ManifestError(f"{directory}: {key} is defined twice")
            seen.add(key)
            resources.append(resource)
    return resources


def check_all_listed(kubernetes_dir: Path) -> None:
    """Every manifest must be rendered by at least one kustomization."""
    listed = {
        path
        for directory in kustomization_dirs(kubernetes_dir)
        for path in kustomization_files(directory)
    }
    orphans = [p for p in kubernetes_manifests(kubernetes_dir) if p.resolve() not in listed]
    if orphans:
        names = ", ".join(str(p) for p in orphans)
        raise ManifestError(f"not listed in any {KUSTOMIZATION}: {names}")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether an equality selector (``matchLabels``) matches ``labels``."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_labels(deployment: Resource) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"].get("labels", {})


def check_references(resources: list[Resource], source: str) -> None:
    """Cross-resource checks within one rendered kustomization named ``source``."""
    by_kind: dict[str, dict[str, Resource]] = {}
    for resource in resources:
        by_kind.setdefault(resource["kind"], {})[resource["metadata"]["name"]] = resource
    deployments = by_kind.get("Deployment", {})
    config_maps = by_kind.get("ConfigMap", {})

    for name, deployment in deployments.items():
        if not selects(
            deployment["spec"]["selector"].get("matchLabels", {}), pod_labels(deployment)
        ):
            raise ManifestError(f"{source}: Deployment/{name} selector does not match its pods")
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for env_from in container.get("envFrom", []):
                ref = env_from.get("configMapRef", {}).get("name")
                if ref is not None and ref not in config_maps:
                    raise ManifestError(
                        f"{source}: Deployment/{name} reads ConfigMap/{ref}, which is not defined"
                    )

    for name, service in by_kind.get("Service", {}).items():
        selected = [
            d
            for d in deployments.values()
            if selects(service["spec"].get("selector", {}), pod_labels(d))
        ]
        if not selected:
            raise ManifestError(f"{source}: Service/{name} selects no Deployment's pods")
        port_names = {
            port.get("name")
            for d in selected
            for container in d["spec"]["template"]["spec"]["containers"]
            for port in container.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort")
            if isinstance(target, str) and target not in port_names:
                raise ManifestError(
                    f"{source}: Service/{name} targets port {target!r}, which its pods do not name"
                )

    for name, budget in by_kind.get("PodDisruptionBudget", {}).items():
        selector = budget["spec"].get("selector", {}).get("matchLabels", {})
        if not any(selects(selector, pod_labels(d)) for d in deployments.values()):
            raise ManifestError(
                f"{source}: PodDisruptionBudget/{name} selects no Deployment's pods"
            )

    for name, autoscaler in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = autoscaler["spec"]["scaleTargetRef"]
        if target["kind"] != "Deployment" or target["name"] not in deployments:
            raise ManifestError(
                f"{source}: HorizontalPodAutoscaler/{name} targets {target['kind']}/"
                f"{target['name']}, which is not defined"
            )


def check_kustomization(directory: Path) -> None:
    """Render the kustomization in ``directory`` and check its cross-references."""
    check_references(render_kustomization(directory), str(directory))


def container_port(port: Any) -> int | None:
    """Container port of a compose ``ports`` entry (short or long syntax)."""
    if isinstance(port, dict):
        return int(port["target"]) if "target" in port else None
    spec = str(port).split("/")[0]
    try:
        return int(spec.rsplit(":", 1)[-1])
    except ValueError:
        return None


def volume_mount(volume: Any) -> tuple[str, str]:
    """(source, target) of a compose ``volumes`` entry (short or long syntax)."""
    if isinstance(volume, dict):
        return str(volume.get("source", "")), str(volume.get("target", ""))
    source, _, rest = str(volume).partition(":")
    return source, rest.split(":")[0]


def check_compose(path: Path) -> None:
    """The compose file runs Argos on its port and Prometheus with ``prometheus.yml``."""
    services = load_document(path).get("services")
    if not isinstance(services, dict):
        raise ManifestError(f"{path}: no `services` mapping")
    for required in (ARGOS_SERVICE, PROMETHEUS_SERVICE):
        if not isinstance(services.get(required), dict):
            raise ManifestError(f"{path}: service {required!r} is missing")
    argos = services[ARGOS_SERVICE]
    if not str(argos.get("image", "")).startswith("argos"):
        raise ManifestError(f"{path}: service {ARGOS_SERVICE!r} must run an Argos image")
    if ARGOS_PORT not in [container_port(p) for p in argos.get("ports", [])]:
        raise ManifestError(f"{path}: service {ARGOS_SERVICE!r} does not publish port {ARGOS_PORT}")
    mounts = [volume_mount(v) for v in services[PROMETHEUS_SERVICE].get("volumes", [])]
    sources = [source for source, target in mounts if target == PROMETHEUS_CONFIG_MOUNT]
    if not sources:
        raise ManifestError(
            f"{path}: service {PROMETHEUS_SERVICE!r} does not mount {PROMETHEUS_CONFIG_MOUNT}"
        )
    if not (path.parent / sources[0]).is_file():
        raise ManifestError(f"{path}: Prometheus configuration {sources[0]} does not exist")


def check_prometheus(path: Path) -> None:
    """Prometheus must scrape the compose Argos service on its port at ``/metrics``."""
    jobs = load_document(path).get("scrape_configs")
    if not isinstance(jobs, list):
        raise ManifestError(f"{path}: no `scrape_configs` list")
    wanted = f"{ARGOS_SERVICE}:{ARGOS_PORT}"
    for job in jobs:
        targets = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
        if wanted in targets:
            if job.get("metrics_path", METRICS_PATH) != METRICS_PATH:
                raise ManifestError(
                    f"{path}: job {job.get('job_name')!r} scrapes {job['metrics_path']}, "
                    f"not {METRICS_PATH}"
                )
            return
    raise ManifestError(f"{path}: no scrape job targets {wanted}")


def collect_errors(deploy_dir: Path = DEPLOY_DIR) -> tuple[list[str], int]:
    """Run every check; returns the error messages and the number of manifests validated."""
    errors: list[str] = []
    kubernetes_dir = deploy_dir / "kubernetes"
    manifests = kubernetes_manifests(kubernetes_dir)
    if not manifests:
        errors.append(f"{kubernetes_dir}: no manifests found")
    for path in manifests:
        try:
            validate_manifest(path)
        except ManifestError as exc:
            errors.append(str(exc))
    try:
        roots = root_kustomizations(kubernetes_dir)
    except ManifestError as exc:
        errors.append(str(exc))
        roots = []
    checks: list[tuple[str, Callable[[], None]]] = [
        *[(str(d), partial(check_kustomization, d)) for d in roots],
        (str(kubernetes_dir), partial(check_all_listed, kubernetes_dir)),
        (str(deploy_dir), partial(check_compose, deploy_dir / "docker-compose.yaml")),
        (str(deploy_dir), partial(check_prometheus, deploy_dir / "prometheus" / "prometheus.yml")),
    ]
    for source, check in checks:
        try:
            check()
        except ManifestError as exc:
            errors.append(str(exc))
        except (KeyError, TypeError, AttributeError) as exc:
            errors.append(f"{source}: malformed resource ({type(exc).__name__}: {exc})")
    return errors, len(manifests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("deploy_dir", nargs="?", type=Path, default=DEPLOY_DIR)
    args = parser.parse_args(argv)
    errors, count = collect_errors(args.deploy_dir)
    for error in errors:
        print(f"ERROR {error}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} check(s) failed", file=sys.stderr)
        return 1
    print(
        f"OK: {count} Kubernetes manifests valid for Kubernetes "
        f"{', '.join(KUBERNETES_VERSIONS)} (strict); kustomizations, docker-compose.yaml "
        "and prometheus.yml consistent"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
