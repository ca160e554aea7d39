from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import validate
from deploy.validate import DEPLOY_DIR, ManifestError
from service.settings import Settings

KUBERNETES_DIR = DEPLOY_DIR / "kubernetes"
MANIFESTS = validate.kubernetes_manifests(KUBERNETES_DIR)
DEPLOYMENTS = ["deployment.yaml", "gpu/deployment.yaml"]
SETTINGS_NAMES = {f"ARGOS_{name.upper()}" for name in Settings.model_fields}


def load(relative: str) -> dict[str, Any]:
    return validate.load_document(KUBERNETES_DIR / relative)


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def argos_env(deployment: dict[str, Any]) -> dict[str, str]:
    """ARGOS_ settings a Deployment's pod sees: the ConfigMap, overridden by `env`."""
    values = dict(load("common/configmap.yaml")["data"])
    values.update({e["name"]: e["value"] for e in only_container(deployment).get("env", [])})
    return {k: v for k, v in values.items() if k.startswith("ARGOS_")}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(KUBERNETES_DIR)))
def test_manifest_passes_strict_schema_validation(path: Path) -> None:
    assert validate.validate_manifest(path)


@pytest.mark.parametrize("variant", ["", "gpu"], ids=["cpu", "gpu"])
def test_kustomization_renders_a_consistent_stack(variant: str) -> None:
    directory = (KUBERNETES_DIR / variant).resolve()
    assert directory in validate.root_kustomizations(KUBERNETES_DIR)
    resources = validate.render_kustomization(directory)
    validate.check_references(resources, str(directory))
    kinds = {r["kind"] for r in resources}
    assert {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} <= kinds


def test_whole_deploy_directory_validates() -> None:
    errors, count = validate.collect_errors()
    assert errors == []
    assert count == len(MANIFESTS)


@pytest.mark.parametrize("relative", DEPLOYMENTS)
def test_probes_map_to_bentoml_health_endpoints(relative: str) -> None:
    container = only_container(load(relative))
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/readyz", "port": "http"}
    # Liveness only starts once model load and warm-up are done; allow at least 5 minutes.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


@pytest.mark.parametrize("relative", DEPLOYMENTS)
def test_pod_is_hardened_and_scrapable(relative: str) -> None:
    deployment = load(relative)
    pod = deployment["spec"]["template"]
    container = only_container(deployment)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["enableServiceLinks"] is False
    # BentoML writes its home at start-up; it must live on the writable /tmp volume.
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]]
    bentoml_home = next(e["value"] for e in container["env"] if e["name"] == "BENTOML_HOME")
    assert bentoml_home.startswith("/tmp/")
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    resources = container["resources"]
    for name in ("cpu", "memory"):
        assert resources["requests"][name] == resources["limits"][name]


def test_gpu_variant_claims_one_gpu_on_gpu_nodes() -> None:
    deployment = load("gpu/deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    container = only_container(deployment)
    assert container["image"] == "argos-gpu:latest"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]


def test_cpu_variant_claims_no_gpu_and_leaves_replicas_to_the_hpa() -> None:
    deployment = load("deployment.yaml")
    container = only_container(deployment)
    assert container["image"] == "argos:latest"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "replicas" not in deployment["spec"]


def test_hpa_targets_the_cpu_deployment() -> None:
    hpa = load("hpa.yaml")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": load("deployment.yaml")["metadata"]["name"],
    }
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    [metric] = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


@pytest.mark.parametrize("relative", DEPLOYMENTS)
def test_service_and_pdb_select_the_deployment_pods(relative: str) -> None:
    deployment = load(relative)
    labels = validate.pod_labels(deployment)
    service = load("common/service.yaml")["spec"]
    pdb = load("common/pdb.yaml")["spec"]
    assert service["type"] == "ClusterIP"
    assert validate.selects(service["selector"], labels)
    assert validate.selects(pdb["selector"]["matchLabels"], labels)
    assert pdb["minAvailable"] == 1
    [port] = service["ports"]
    named = {p["name"]: p["containerPort"] for p in only_container(deployment)["ports"]}
    assert (port["port"], named[port["targetPort"]]) == (80, 3000)


def test_cpu_and_gpu_deployments_do_not_select_each_others_pods() -> None:
    cpu, gpu = (load(relative) for relative in DEPLOYMENTS)
    assert not validate.selects(cpu["spec"]["selector"]["matchLabels"], validate.pod_labels(gpu))
    assert not validate.selects(gpu["spec"]["selector"]["matchLabels"], validate.pod_labels(cpu))


@pytest.mark.parametrize("relative", DEPLOYMENTS)
def test_argos_environment_is_accepted_by_the_service_settings(
    relative: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = argos_env(load(relative))
    assert {"ARGOS_MODEL", "ARGOS_BATCH_MAX_SIZE", "ARGOS_BATCH_MAX_LATENCY_MS"} <= env.keys()
    assert {"ARGOS_INFERENCE_THREADS", "ARGOS_API_WORKERS"} <= env.keys()
    assert env.keys() <= SETTINGS_NAMES
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.batch_max_size == int(env["ARGOS_BATCH_MAX_SIZE"])


def test_compose_runs_argos_and_prometheus_scrapes_it() -> None:
    validate.check_compose(DEPLOY_DIR / "docker-compose.yaml")
    validate.check_prometheus(DEPLOY_DIR / "prometheus" / "prometheus.yml")
    compose = validate.load_document(DEPLOY_DIR / "docker-compose.yaml")
    assert compose["services"]["argos"]["environment"].keys() <= SETTINGS_NAMES


def test_validator_rejects_a_non_integer_replica_count(tmp_path: Path) -> None:
    deployment = load("deployment.yaml")
    deployment["spec"]["replicas"] = "two"
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump(deployment))
    with pytest.raises(ManifestError, match=r"at spec\.replicas: 'two' is not of type"):
        validate.validate_manifest(path)


def test_validator_rejects_unknown_fields(tmp_path: Path) -> None:
    deployment = load("deployment.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump(deployment))
    with pytest.raises(ManifestError, match="'livenessprobe' was unexpected"):
        validate.validate_manifest(path)


def _retarget_service(root: Path) -> None:
    path = root / "kubernetes" / "common" / "service.yaml"
    service = yaml.safe_load(path.read_text())
    service["spec"]["selector"] = {"app.kubernetes.io/name": "argus"}
    path.write_text(yaml.safe_dump(service))


def _add_unlisted_manifest(root: Path) -> None:
    shutil.copy(root / "kubernetes" / "hpa.yaml", root / "kubernetes" / "gpu" / "hpa.yaml")


def _scrape_wrong_path(root: Path) -> None:
    path = root / "prometheus" / "prometheus.yml"
    path.write_text(path.read_text().replace("metrics_path: /metrics", "metrics_path: /stats"))


def _prefix_names(root: Path) -> None:
    path = root / "kubernetes" / "kustomization.yaml"
    path.write_text(path.read_text() + "namePrefix: staging-\n")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_retarget_service, "Service/argos selects no Deployment's pods"),
        (_add_unlisted_manifest, "not listed in any kustomization.yaml"),
        (_scrape_wrong_path, "scrapes /stats, not /metrics"),
        (_prefix_names, "uses namePrefix, which this offline check does not render"),
    ],
)
def test_cli_exits_non_zero_on_a_broken_copy(
    breakage: Callable[[Path], None],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "deploy"
    shutil.copytree(DEPLOY_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    assert validate.main([str(root)]) == 0
    breakage(root)
    assert validate.main([str(root)]) == 1
    assert message in capsys.readouterr().err
