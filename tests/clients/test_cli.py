"""The argos-petdoor command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.petdoor.cli import main
from tests.clients.support import unused_port, write_image


def test_cli_fails_closed_when_the_service_is_down(tmp_path: Path) -> None:
    policy, audit_path = tmp_path / "policy.yaml", tmp_path / "audit.jsonl"
    policy.write_text("allow: [dog]\ndebounce_frames: 1\n")
    frames = tmp_path / "frames"
    frames.mkdir()
    write_image(frames / "1.jpg", 100)
    opened, closed = tmp_path / "opened", tmp_path / "closed"

    status = main(
        [
            "--url",
            f"http://127.0.0.1:{unused_port()}",
            "--policy",
            str(policy),
            "--watch",
            str(frames),
            "--once",
            "--retries",
            "1",
            "--audit-log",
            str(audit_path),
            "--driver",
            "command",
            "--open-command",
            f"touch {opened}",
            "--close-command",
            f"touch {closed}",
        ]
    )

    assert status == 0
    records = [json.loads(line) for line in audit_path.read_text().splitlines()]
    assert [(r["frame"], r["decision"]) for r in records] == [
        (str(frames / "1.jpg"), "closed"),
        (None, "closed"),
    ]
    assert records[0]["reason"].startswith("error: service error: ")
    assert "ConnectError" in records[0]["reason"]
    assert closed.exists() and not opened.exists()


def test_cli_rejects_a_bad_policy_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("allow: [dog]\nhold_open: 5\n")

    status = main(["--policy", str(policy), "--file", str(tmp_path / "x.jpg"), "--once"])

    assert status == 2
    assert "hold_open: Extra inputs are not permitted" in capsys.readouterr().err
