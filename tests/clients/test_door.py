"""PetDoor wiring without a server: errors close the door and are audited."""

from __future__ import annotations

import json
from pathlib import Path

from clients.http import ArgosClient
from clients.petdoor.audit import AuditLog
from clients.petdoor.door import PetDoor
from clients.petdoor.drivers import CommandDriver
from clients.petdoor.policy import Policy
from clients.petdoor.sources import FileSource, Frame
from tests.clients.support import unused_port


def test_unreadable_frame_closes_the_door_and_is_audited(tmp_path: Path) -> None:
    closed_flag, audit_path = tmp_path / "closed", tmp_path / "audit.jsonl"
    driver = CommandDriver(["false"], ["touch", str(closed_flag)])
    with ArgosClient(f"http://127.0.0.1:{unused_port()}") as client:
        door = PetDoor(
            FileSource(tmp_path / "x.jpg"),
            client,
            Policy(allow=["dog"]),
            driver,
            audit=AuditLog(audit_path),
        )
        decision = door.process(
            Frame("cam/1.jpg", error="cannot read cam/1.jpg: Permission denied")
        )

    assert decision.state == "closed"
    assert decision.reason == "error: unreadable frame: cannot read cam/1.jpg: Permission denied"
    assert closed_flag.exists()
    record = json.loads(audit_path.read_text())
    assert (record["frame"], record["decision"], record["door"]) == (
        "cam/1.jpg",
        "closed",
        "closed",
    )


def test_failing_close_command_is_audited_and_retried(tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    driver = CommandDriver(["true"], ["false"])
    with ArgosClient(f"http://127.0.0.1:{unused_port()}") as client:
        door = PetDoor(
            FileSource(tmp_path / "x.jpg"),
            client,
            Policy(allow=["dog"]),
            driver,
            audit=AuditLog(audit_path),
        )
        first = door.process(Frame("cam/1.jpg", error="broken"))
        retried = door.tick()

    assert (first.state, first.code) == ("closed", "driver_error")
    assert retried.code == "driver_error"
    assert door.door_state is None
    records = [json.loads(line) for line in audit_path.read_text().splitlines()]
    assert [r["door"] for r in records] == ["unknown", "unknown"]
