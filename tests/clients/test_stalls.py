"""The pet door against servers that stall, trickle or lie, on loopback.

The door must close on time whatever the network does: when its hold runs out and when
the client is stopped, even while a call to the camera or to Argos hangs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from clients.http import ArgosClient, ArgosUnavailable
from clients.petdoor.audit import AuditLog
from clients.petdoor.door import PetDoor
from clients.petdoor.policy import Policy
from clients.petdoor.sources import FolderSource, SnapshotSource
from tests.clients.support import Action, LoopbackServer, fake_argos

REPO = Path(__file__).resolve().parents[2]
HOLD = 1.0
SLACK = 1.0
# A 1-second deadline against a reply that would take 1000 s: generous for a loaded machine.
MAX_CALL_SECONDS = 5.0
STALL: Action = ("stall",)


class RecordingDriver:
    """A door that remembers when it was switched."""

    def __init__(self) -> None:
        self.switches: list[tuple[float, str]] = []
        self.changed = threading.Condition()

    def open(self) -> None:
        self._record("open")

    def close(self) -> None:
        self._record("closed")

    def _record(self, state: str) -> None:
        with self.changed:
            self.switches.append((time.monotonic(), state))
            self.changed.notify_all()

    def wait_for(self, state: str, timeout: float) -> float | None:
        """When the door was last switched to ``state``, waiting up to ``timeout`` for it."""
        with self.changed:
            self.changed.wait_for(lambda: self._last(state) is not None, timeout)
            return self._last(state)

    def _last(self, state: str) -> float | None:
        if self.switches and self.switches[-1][1] == state:
            return self.switches[-1][0]
        return None


@contextmanager
def running(door: PetDoor) -> Iterator[threading.Event]:
    stop = threading.Event()
    loop = threading.Thread(target=door.run, args=(0.05, stop), daemon=True)
    loop.start()
    try:
        yield stop
    finally:
        stop.set()


def make_door(argos: str, camera: str, driver: RecordingDriver, hold: float = HOLD) -> PetDoor:
    policy = Policy(allow=["dog"], deny=["cat"], debounce_frames=1, hold_open_seconds=hold)
    return PetDoor(
        SnapshotSource(f"{camera}/snapshot", timeout=30),
        ArgosClient(argos, timeout=30),
        policy,
        driver,
    )


def first_then(action: Action, after: int = 1):
    """Answer like Argos for the first ``after`` classifications, then ``action``."""
    return fake_argos(lambda count: action if count > after else fake_argos()("POST", "/x", 0))


@pytest.mark.parametrize("stalling", ["argos", "camera"])
def test_the_door_closes_when_its_hold_runs_out_while_a_call_stalls(stalling: str) -> None:
    def camera_script(method: str, path: str, count: int) -> Action:
        if stalling == "camera" and count > 1:
            return STALL
        return fake_argos()(method, path, count)

    def argos_script(method: str, path: str, count: int) -> Action:
        if stalling == "argos" and path == "/classify" and count > 1:
            return STALL
        return fake_argos()(method, path, count)

    driver = RecordingDriver()
    with LoopbackServer(argos_script) as argos, LoopbackServer(camera_script) as camera:
        door = make_door(argos.url, camera.url, driver)
        with running(door):
            opened = driver.wait_for("open", timeout=10)
            assert opened is not None, driver.switches
            closed = driver.wait_for("closed", timeout=HOLD + SLACK + 1)
            stalled = argos if stalling == "argos" else camera
            still_stalled = not stalled.released.is_set()
        assert closed is not None, driver.switches
        assert closed - opened <= HOLD + SLACK
        assert still_stalled


def test_stopping_shuts_the_door_at_once_while_a_call_stalls() -> None:
    def argos_script(method: str, path: str, count: int) -> Action:
        if path == "/classify" and count > 1:
            return STALL
        return fake_argos()(method, path, count)

    driver = RecordingDriver()
    with LoopbackServer(argos_script) as argos, LoopbackServer(fake_argos()) as camera:
        door = make_door(argos.url, camera.url, driver, hold=60)
        with running(door) as stop:
            assert driver.wait_for("open", timeout=10) is not None
            while argos.requests["/classify"] < 2:
                time.sleep(0.01)
            stopped = time.monotonic()
            stop.set()
            closed = driver.wait_for("closed", timeout=SLACK + 1)
        assert closed is not None and closed - stopped <= SLACK


def test_sigterm_shuts_the_door_and_ends_the_client_while_argos_stalls(tmp_path: Path) -> None:
    def argos_script(method: str, path: str, count: int) -> Action:
        if path == "/classify" and count > 1:
            return STALL
        return fake_argos()(method, path, count)

    policy = tmp_path / "policy.yaml"
    policy.write_text("allow: [dog]\ndebounce_frames: 1\nhold_open_seconds: 60\n")
    with LoopbackServer(argos_script) as argos, LoopbackServer(fake_argos()) as camera:
        command = [sys.executable, "-m", "clients.petdoor", "--url", argos.url]
        command += ["--policy", str(policy), "--snapshot-url", f"{camera.url}/snapshot"]
        command += ["--interval", "0.05", "--timeout", "30"]
        client = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ | {"PYTHONPATH": str(REPO)},
        )
        try:
            assert client.stdout is not None
            assert client.stdout.readline().split()[-1] == "open"
            while argos.requests["/classify"] < 2:
                time.sleep(0.01)
            signalled = time.monotonic()
            client.send_signal(signal.SIGTERM)
            assert client.stdout.readline().split()[-1] == "closed"
            closed = time.monotonic()
            client.wait(timeout=5)
            ended = time.monotonic()
        finally:
            client.kill()
            client.wait()
    assert closed - signalled <= SLACK
    assert ended - signalled <= SLACK + 2
    assert client.returncode == 0


@pytest.mark.parametrize("behaviour", ["trickle", "stall"])
def test_every_call_has_a_total_deadline(behaviour: str) -> None:
    action: Action = (behaviour,)
    with LoopbackServer(lambda method, path, count: action) as server:
        started = time.monotonic()
        frames = SnapshotSource(f"{server.url}/snapshot", timeout=1).poll()
        snapshot_s = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(ArgosUnavailable), ArgosClient(server.url, timeout=1) as client:
            client.model_card()
        argos_s = time.monotonic() - started
    assert frames[0].data is None and "snapshot fetch failed" in (frames[0].error or "")
    assert snapshot_s < MAX_CALL_SECONDS
    assert argos_s < MAX_CALL_SECONDS


def test_an_endless_snapshot_is_cut_at_the_size_cap() -> None:
    with LoopbackServer(lambda method, path, count: ("endless",)) as server:
        started = time.monotonic()
        frames = SnapshotSource(f"{server.url}/snapshot", timeout=30, max_bytes=2**20).poll()
    assert frames[0].data is None
    assert "over the cap of 1048576 bytes" in (frames[0].error or "")
    assert time.monotonic() - started < 5


def test_a_policy_naming_what_the_model_lacks_is_refused_at_start(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("allow: [dog]\ndeny: [kat]\n")
    with LoopbackServer(fake_argos()) as argos:
        done = subprocess.run(
            [sys.executable, "-m", "clients.petdoor", "--url", argos.url, "--policy", str(policy)]
            + ["--file", str(tmp_path / "frame.jpg"), "--interval", "0.05"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            env=os.environ | {"PYTHONPATH": str(REPO)},
        )
    assert done.returncode == 2
    assert "model pets 1 has no label or group named kat" in done.stderr
    assert "its groups are canine; its labels are dog, cat, fox" in done.stderr


def test_a_frame_whose_name_is_not_utf8_is_decided_and_audited(tmp_path: Path) -> None:
    frames, audit_path = tmp_path / "frames", tmp_path / "audit.jsonl"
    frames.mkdir()
    raw_name = b"caf\xe9.jpg"  # Latin-1, as old cameras write
    (Path(os.fsdecode(frames)) / os.fsdecode(raw_name)).write_bytes(b"\xff\xd8\xff frame")
    driver = RecordingDriver()
    policy = Policy(allow=["dog"], debounce_frames=1)
    with LoopbackServer(fake_argos()) as argos, ArgosClient(argos.url, timeout=5) as client:
        door = PetDoor(
            FolderSource(frames, settle_seconds=0), client, policy, driver, AuditLog(audit_path)
        )
        decisions = door.run_once()
    assert [d.state for d in decisions] == ["open"]
    record = json.loads(audit_path.read_text(encoding="utf-8"))
    assert os.fsencode(record["frame"]) == os.fsencode(frames) + b"/" + raw_name
    assert record["decision"] == "open"
