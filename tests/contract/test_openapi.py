"""The OpenAPI document as a contract: Schemathesis fuzzes a real server from it.

Its examples and fuzzing phases run with a fixed seed and a bounded number of cases per
operation; uploads are real images (see :mod:`tests.contract.hooks`). The run must find no
5xx, no reply off its documented schema, and no operation whose generated requests are
mostly refused (Schemathesis's "validation mismatch" and "low valid rate" warnings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

SEED = 20261123
MAX_EXAMPLES = 10
UPLOADS = ["POST /classify", "POST /classify/render", "POST /detect", "POST /detect/render"]
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
]
WARNINGS = ["validation_mismatch", "low_valid_rate", "missing_test_data", "missing_deserializer"]


@pytest.fixture(scope="module")
def report(argos_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The JSON report of one Schemathesis run against the real server."""
    folder = tmp_path_factory.mktemp("schemathesis")
    command = [
        *(sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()"),
        "run",
        f"{argos_url}/openapi.json",
        "--phases=examples,fuzzing",
        f"--seed={SEED}",
        f"--max-examples={MAX_EXAMPLES}",
        f"--checks={','.join(CHECKS)}",
        f"--warnings={','.join(WARNINGS)}",
        "--workers=1",  # one request at a time: a 503 would mean a fault, not overload
        # /v2 inference and the model repository are exercised with the stock tritonclient
        # (tests/integration/test_many_models.py); fuzzed loads and unloads would change the
        # models that the other tests of this server rely on.
        "--exclude-path-regex=^/v2/(models/.*/infer|repository/models/)",
        "--continue-on-failure",
        "--generation-database=none",
        "--request-timeout=60",
        "--report=json",
        f"--report-dir={folder}",
    ]
    env = os.environ | {
        "SCHEMATHESIS_HOOKS": "tests.contract.hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    run = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    reports = list(Path(folder).glob("*.json"))
    assert reports, f"Schemathesis wrote no report:\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    body = json.loads(reports[0].read_text())
    body["output"] = run.stdout[-8000:]
    return body


def test_every_operation_was_tested_to_the_end(report: dict) -> None:
    assert report["complete"] and report["errors"] == [], report["output"]
    assert report["phases"]["examples"]["status"] != "error", report["output"]
    assert report["phases"]["fuzzing"]["status"] == "success", report["output"]
    assert set(UPLOADS) <= set(report["valid_rates"]), report["valid_rates"]


def test_no_server_error_and_no_reply_off_the_contract(report: dict) -> None:
    assert report["failures"] == [], report["output"]
    assert report["exit_code"] == 0, report["output"]


def test_no_operation_mostly_rejects_generated_requests(report: dict) -> None:
    warned = {kind: labels for kind, labels in report["warnings"].items() if labels}
    assert warned == {}, report["output"]


def test_fuzzed_images_reach_the_decoder_and_are_answered(report: dict) -> None:
    """Fuzzed uploads get past validation to the decoder and a 200 (the share refused is
    Schemathesis's low-valid-rate warning, checked above)."""
    for operation in UPLOADS:
        fuzzing = report["valid_rates"][operation]["fuzzing"]
        assert fuzzing["accepted"] > 0, (operation, fuzzing)
