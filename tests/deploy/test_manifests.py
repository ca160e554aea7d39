"""The deployment files as a cluster and a server would see them, and that each check of
``deploy/validate.py`` fails on a copy broken on purpose."""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
import yaml

from deploy import validate
from deploy.validate import DEPLOY_DIR
from service.settings import Settings

Resource = dict[str, Any]
EXAMPLE_SECRET = DEPLOY_DIR / "kubernetes" / "secret.example.yaml"
# API key files, by the environment variable that names them: the Secret's keys.
KEY_FILES = {"ARGOS_INFER_KEYS_FILE": "infer", "ARGOS_ADMIN_KEYS_FILE": "admin"}


def rendered(variant: str) -> list[Resource]:
    return validate.render(DEPLOY_DIR / validate.VARIANTS[variant])


def only(resources: list[Resource], kind: str) -> Resource:
    [resource] = [r for r in resources if r["kind"] == kind]
    return resource


def argos_container(variant: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The Argos container of a variant's Deployment and the environment it sees."""
    [(_, container, env)] = validate.containers(rendered(variant))
    return container, env


def test_deploy_directory_passes_every_check() -> None:
    assert validate.collect_errors() == []


@pytest.mark.integration
@pytest.mark.parametrize("variant", validate.VARIANTS)
def test_probes_and_scrape_path_are_served_by_a_real_server(variant: str, argos_url: str) -> None:
    resources = rendered(variant)
    container, _ = argos_container(variant)
    pod = only(resources, "Deployment")["spec"]["template"]
    paths = {container[probe]["httpGet"]["path"] for probe in container if probe.endswith("Probe")}
    paths.add(pod["metadata"]["annotations"]["prometheus.io/path"])
    for path in sorted(paths):
        assert httpx.get(argos_url + path, timeout=10).status_code == 200, path


def test_service_reaches_both_variants_but_deployments_own_only_their_pods() -> None:
    cpu, gpu = (only(rendered(variant), "Deployment") for variant in ("cpu", "gpu"))
    service = only(rendered("cpu"), "Service")
    for deployment in (cpu, gpu):
        assert validate.selects(service["spec"]["selector"], validate.pod_labels(deployment))
    # A Deployment that selected the other's pods would scale them down in a rollout.
    assert not validate.selects(cpu["spec"]["selector"]["matchLabels"], validate.pod_labels(gpu))
    assert not validate.selects(gpu["spec"]["selector"]["matchLabels"], validate.pod_labels(cpu))


def test_only_the_gpu_variant_claims_a_gpu_and_prefers_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpu, gpu_env = argos_container("gpu")
    cpu, cpu_env = argos_container("cpu")
    assert int(gpu["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    monkeypatch.setenv("ARGOS_PROVIDERS", gpu_env["ARGOS_PROVIDERS"])
    assert Settings().providers[0] == "CUDAExecutionProvider"
    assert "ARGOS_PROVIDERS" not in cpu_env


@pytest.mark.parametrize("variant", validate.VARIANTS)
def test_bentoml_home_is_on_a_writable_volume(variant: str) -> None:
    """The root filesystem is read-only and BentoML creates its home at start-up."""
    container, env = argos_container(variant)
    volumes = only(rendered(variant), "Deployment")["spec"]["template"]["spec"]["volumes"]
    scratch = {v["name"] for v in volumes if "emptyDir" in v}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    writable = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in scratch]
    assert any(env["BENTOML_HOME"].startswith(path.rstrip("/") + "/") for path in writable)


@pytest.mark.parametrize("variant", validate.VARIANTS)
def test_argos_environment_is_accepted_by_the_service_settings(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, env = argos_container(variant)
    argos = {name: value for name, value in env.items() if name.startswith("ARGOS_")}
    fields = {f"ARGOS_{name.upper()}" for name in Settings.model_fields}
    assert argos.keys() <= fields
    for name, value in argos.items():
        monkeypatch.setenv(name, value)
    Settings()


@pytest.mark.parametrize("variant", validate.VARIANTS)
def test_api_key_files_come_from_the_required_secret_of_the_example(variant: str) -> None:
    container, env = argos_container(variant)
    secret = yaml.safe_load(EXAMPLE_SECRET.read_text())
    assert list(validate.schema_errors([secret])) == []
    pod = only(rendered(variant), "Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounted = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    for name, key in KEY_FILES.items():
        path = PurePosixPath(env[name])
        assert path.name == key and key in secret["stringData"]
        source = mounted[str(path.parent)]["secret"]
        assert source == source | {"secretName": secret["metadata"]["name"], "optional": False}


def replace(path: str, old: str, new: str) -> Any:
    """A breakage: replace ``old`` by ``new`` in the file at ``path`` of a copied repository."""

    def apply(root: Path) -> None:
        file = root / path
        text = file.read_text()
        assert old in text, f"{old!r} not in {path}"
        file.write_text(text.replace(old, new, 1))

    return apply


def add_file(path: str, text: str) -> Any:
    return lambda root: (root / path).write_text(text)


DEPLOYMENT = "deploy/kubernetes/deployment.yaml"
GPU_DEPLOYMENT = "deploy/kubernetes/gpu/deployment.yaml"
CONFIG_MAP = "deploy/kubernetes/common/configmap.yaml"
EXTRA_CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra"}}


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        pytest.param(
            replace(DEPLOYMENT, "revisionHistoryLimit: 5", "revisionHistoryLimit: five"),
            "at spec.revisionHistoryLimit: 'five' is not of type 'integer'",
            id="schema-type",
        ),
        pytest.param(
            replace(DEPLOYMENT, "livenessProbe:", "livenessprobe:"),
            "'livenessprobe' was unexpected",
            id="schema-unknown-field",
        ),
        pytest.param(
            replace("deploy/kubernetes/kustomization.yaml", "- hpa.yaml", "- hpa.yml"),
            "kustomize failed",
            id="kustomization-missing-file",
        ),
        pytest.param(
            add_file("deploy/kubernetes/extra.yaml", json.dumps(EXTRA_CONFIG_MAP)),
            "ConfigMap/extra is applied by no kustomization",
            id="manifest-not-applied",
        ),
        pytest.param(
            replace(
                "deploy/kubernetes/common/service.yaml",
                "name: argos\n  ports",
                "name: argus\n  ports",
            ),
            "Service/argos selects no Deployment's pods",
            id="service-selector",
        ),
        pytest.param(
            replace(
                GPU_DEPLOYMENT, "instance: argos-gpu\n  template:", "instance: gpu\n  template:"
            ),
            "Deployment/argos-gpu: selector does not match its pod labels",
            id="deployment-selector",
        ),
        pytest.param(
            replace(
                "deploy/kubernetes/common/pdb.yaml",
                "matchLabels:\n      app.kubernetes.io/name: argos",
                "matchLabels:\n      app.kubernetes.io/name: argus",
            ),
            "PodDisruptionBudget/argos selects no Deployment's pods",
            id="budget-selector",
        ),
        pytest.param(
            replace("deploy/kubernetes/common/service.yaml", "targetPort: http", "targetPort: web"),
            "Service/argos: no pod names port 'web'",
            id="service-target-port",
        ),
        pytest.param(
            replace(
                "deploy/kubernetes/hpa.yaml",
                "name: argos\n  minReplicas",
                "name: argus\n  minReplicas",
            ),
            "HorizontalPodAutoscaler/argos scales Deployment/argus, which is not defined",
            id="autoscaler-target",
        ),
        pytest.param(
            replace(
                GPU_DEPLOYMENT,
                "readinessProbe:\n            httpGet:\n              path: /readyz",
                "readinessProbe:\n            httpGet:\n              path: /livez",
            ),
            "gpu: Deployment/argos-gpu: readinessProbe must GET /readyz",
            id="readiness-route",
        ),
        pytest.param(
            replace(GPU_DEPLOYMENT, "name: argos-config", "name: argos-settings"),
            "reads ConfigMap/argos-settings, which is not defined",
            id="undefined-config-map",
        ),
        pytest.param(
            replace(DEPLOYMENT, "path: /livez", "path: /healthz"),
            "livenessProbe must GET /livez",
            id="liveness-route",
        ),
        pytest.param(
            replace(
                GPU_DEPLOYMENT,
                "terminationGracePeriodSeconds: 60",
                "terminationGracePeriodSeconds: 30",
            ),
            "terminationGracePeriodSeconds 30 < preStop 10 s + drain 30 s",
            id="grace-shorter-than-drain",
        ),
        pytest.param(
            replace(CONFIG_MAP, "\ndata:\n", '\ndata:\n  ARGOS_DRAIN_TIMEOUT_S: "60"\n'),
            "terminationGracePeriodSeconds 60 < preStop 10 s + drain 60 s",
            id="drain-longer-than-grace",
        ),
        pytest.param(
            replace(DEPLOYMENT, 'command: ["sleep", "10"]', 'command: ["true"]'),
            "preStop must be exec [sleep, SECONDS]",
            id="no-prestop-sleep",
        ),
        pytest.param(
            replace(CONFIG_MAP, 'ARGOS_WORKERS: "2"', 'ARGOS_WORKERS: "3"'),
            "cpu: Deployment/argos: ARGOS_WORKERS (3) x ARGOS_INFERENCE_THREADS (1) must be set "
            "and at most the CPU limit (2)",
            id="workers-over-cpu-limit",
        ),
        pytest.param(
            replace(CONFIG_MAP, 'ARGOS_INFERENCE_THREADS: "1"', 'ARGOS_INFERENCE_THREADS: "0"'),
            "ARGOS_INFERENCE_THREADS (0) must be set",
            id="threads-sized-from-node",
        ),
    ],
)
def test_each_check_fails_on_a_broken_copy(
    breakage: Any, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(
        DEPLOY_DIR, tmp_path / "deploy", ignore=shutil.ignore_patterns("*.py", "__pycache__")
    )
    breakage(tmp_path)
    assert validate.main([str(tmp_path / "deploy")]) == 1
    assert message in capsys.readouterr().err
