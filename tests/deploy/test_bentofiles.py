"""The images run the onnxruntime release the tests run, with the CUDA it was built for."""

from __future__ import annotations

import re

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
