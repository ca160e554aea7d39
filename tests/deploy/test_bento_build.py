"""`bentoml build` of the CPU and GPU bentofiles: what the bento, and so the image, holds.

Each build runs in a subprocess against the current ``BENTOML_HOME`` (locking the Python
requirements needs the package index) and is deleted afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bentoml
import onnxruntime
import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Variant:
    bentofile: str
    name: str
    base_image: str
    runtime: str  # the onnxruntime distribution the image must install


VARIANTS = [
    Variant("bentofile.yaml", "argos", "python:3.11-slim", "onnxruntime"),
    Variant(
        "deploy/bentofile.gpu.yaml",
        "argos-gpu",
        "nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04",
        "onnxruntime-gpu",
    ),
]


@dataclass(frozen=True)
class Built:
    variant: Variant
    tag: str
    path: Path


def bentoml_cli(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"bentoml {' '.join(args)} failed:\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda variant: variant.name)
def built(request: pytest.FixtureRequest, default_model: str) -> Iterator[Built]:
    variant: Variant = request.param
    env = os.environ | {"ARGOS_MODEL": default_model}
    output = bentoml_cli("build", "-f", variant.bentofile, "-o", "tag", env=env)
    match = re.search(r"__tag__:(\S+)", output)
    assert match, f"no bento tag in the output of bentoml build:\n{output}"
    tag = match.group(1)
    try:
        yield Built(variant, tag, Path(bentoml.bentos.get(tag).path))
    finally:
        bentoml_cli("delete", "-y", tag)


def requirement_pins(built: Built) -> dict[str, str]:
    """The locked ``name==version`` lines the image installs."""
    python_env = built.path / "env" / "python"
    lock = python_env / "requirements.lock.txt"
    text = (lock if lock.exists() else python_env / "requirements.txt").read_text()
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", text, flags=re.MULTILINE))


def test_bento_yaml_names_the_service_and_the_model(built: Built, default_model: str) -> None:
    info = yaml.safe_load((built.path / "bento.yaml").read_text())
    model_tag = str(bentoml.models.get(default_model).tag)
    assert info["name"] == built.variant.name
    assert info["service"] == "service.service:Argos"
    assert info["entry_service"] == "argos"
    services = {service["name"]: service for service in info["services"]}
    assert set(services) == {"argos"}
    for service in services.values():
        assert [model["tag"] for model in service["models"]] == [model_tag]


def test_src_holds_the_service_code_only(built: Built) -> None:
    src = built.path / "src"
    files = {path.relative_to(src).as_posix() for path in src.rglob("*") if path.is_file()}
    assert {"service/service.py", "service/settings.py", "service/preprocessing.py"} <= files
    service_code = r"service/(\w+/)*(\w+\.py|static/.+)"
    strays = {name for name in files if not re.fullmatch(service_code, name)}
    assert strays == {"bentofile.yaml"}, "only service/ code and static files, and the bentofile"


def test_image_installs_locked_requirements_without_training_packages(built: Built) -> None:
    pins = {name.lower(): version for name, version in requirement_pins(built).items()}
    runtime = built.variant.runtime
    assert runtime in pins and "bentoml" in pins and "pillow" in pins
    other_runtime = {"onnxruntime", "onnxruntime-gpu"} - {runtime}
    assert not other_runtime & set(pins), "exactly one onnxruntime distribution"
    assert not {"tensorflow", "keras", "tf2onnx", "matplotlib", "locust"} & set(pins)
    assert pins[runtime] == onnxruntime.__version__, "the release the tests run"


def test_generated_dockerfile_installs_the_python_requirements(built: Built) -> None:
    text = (built.path / "env" / "docker" / "Dockerfile").read_text()
    dockerfile = text.replace("\\\n", " ")  # one line per instruction
    assert re.search(rf"^FROM {re.escape(built.variant.base_image)}\b", dockerfile, re.MULTILINE)
    assert "COPY --chown=bentoml:bentoml ./env/python ./env/python/" in dockerfile
    install = r"pip install -r \$BENTO_PATH/env/python/requirements\.txt|env/python/install\.sh"
    assert re.search(rf"^RUN .*({install})", dockerfile, re.MULTILINE)
    assert re.search(r"^ENTRYPOINT .*entrypoint\.sh", dockerfile, re.MULTILINE)
    if "ENV UV_PYTHON=" in dockerfile:  # the GPU image gets its Python from uv
        locked = (built.path / "env" / "python" / "version.txt").read_text().strip()
        assert f"ENV UV_PYTHON={'.'.join(locked.split('.')[:2])}\n" in dockerfile


def test_exported_bento_carries_the_model(built: Built, default_model: str, tmp_path: Path) -> None:
    """Bentos refer to store models; export (like containerize) copies them in."""
    archive = tmp_path / "argos.bento"
    bentoml_cli("export", built.tag, str(archive))
    model = bentoml.models.get(default_model).tag
    with tarfile.open(archive) as tar:
        names = {name.removeprefix("./") for name in tar.getnames()}
    folder = f"models/{model.name}/{model.version}"
    assert {f"{folder}/model.onnx", f"{folder}/card.json"} <= names
