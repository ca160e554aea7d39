"""The images run the onnxruntime release the tests run, with the CUDA it was built for."""

from __future__ import annotations

import re
import tomllib

import onnxruntime
import pytest
import yaml
from packaging.requirements import Requirement

from tests.conftest import REPO

BENTOFILES = ["bentofile.yaml", "deploy/bentofile.gpu.yaml"]


def bentofile(relative: str) -> dict:
    return yaml.safe_load((REPO / relative).read_text())


@pytest.mark.parametrize("relative", BENTOFILES)
def test_image_installs_the_onnxruntime_release_the_tests_run(relative: str) -> None:
    requirements = map(Requirement, bentofile(relative)["python"]["packages"])
    [runtime] = [r for r in requirements if r.name.startswith("onnxruntime")]
    assert onnxruntime.__version__ in runtime.specifier


def test_gpu_base_image_provides_the_cuda_onnxruntime_gpu_was_built_for() -> None:
    build = pytest.importorskip("onnxruntime.capi.build_and_package_info")
    if getattr(build, "package_name", "") != "onnxruntime-gpu":
        pytest.skip("the CPU build of onnxruntime is installed")
    base_image = bentofile("deploy/bentofile.gpu.yaml")["docker"]["base_image"]
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-cudnn-runtime-\S+", base_image)
    assert match, f"{base_image} is not an NVIDIA CUDA runtime image with cuDNN"
    built_for = tuple(int(part) for part in build.cuda_version.split(".")[:2])
    provided = (int(match[1]), int(match[2]))
    # CUDA minor version compatibility: same major, a runtime at least as new.
    assert provided[0] == built_for[0] and provided >= built_for, (provided, built_for)


def pins(requirements: list[str]) -> dict[str, str]:
    return {r.name: str(r.specifier) for r in map(Requirement, requirements)}


PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PYPROJECT_PINS = pins(PYPROJECT["dependencies"])


@pytest.mark.parametrize("relative", BENTOFILES)
def test_image_pins_what_pyproject_pins(relative: str) -> None:
    """An image must not install another release of anything than the tests run."""
    for name, specifier in pins(bentofile(relative)["python"]["packages"]).items():
        assert specifier == PYPROJECT_PINS.get(name), f"{relative}: {name}{specifier}"


def test_cpu_and_gpu_onnxruntime_are_one_exact_release() -> None:
    cpu, gpu = PYPROJECT_PINS["onnxruntime"], PYPROJECT_PINS["onnxruntime-gpu"]
    assert cpu == gpu and cpu.startswith("=="), (cpu, gpu)


def test_dockerfile_base_is_pinned_and_has_the_python_the_bento_is_locked_for() -> None:
    """deploy/Dockerfile's default base is a digest-pinned Debian bookworm image with the
    Python of the bentofile, like the base scripts/container builds from Debian's archive."""
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    [base] = re.findall(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    match = re.fullmatch(r"\S+/python:(\d+\.\d+)\.\d+-slim-(\w+)@sha256:[0-9a-f]{64}", base)
    assert match, f"{base} is not a slim Python image pinned by digest"
    script = (REPO / "scripts" / "container").read_text()
    assert match.group(2) == re.search(r"^BASE_SUITE=(\w+)$", script, re.MULTILINE).group(1)
    assert match.group(1) == bentofile("bentofile.yaml")["docker"]["python_version"]
