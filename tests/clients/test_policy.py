"""Unit tests of the pet-door client: policy, decision logic, audit log, sources, drivers."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path

import pytest

from clients.http import ArgosClient, ArgosRequestError, ArgosUnavailable, ClassifyResult
from clients.petdoor.audit import AuditLog
from clients.petdoor.cli import main
from clients.petdoor.door import PetDoor
from clients.petdoor.drivers import CommandDriver, DriverError
from clients.petdoor.logic import DoorLogic
from clients.petdoor.policy import Policy, PolicyError, Verdict, frame_scores, judge, load_policy
from clients.petdoor.retry import Backoff, with_retries
from clients.petdoor.sources import FileSource, FolderSource, Frame

EXAMPLE_POLICY = Path(__file__).parents[2] / "clients" / "petdoor" / "policy.example.yaml"
ALLOW = Verdict("allow", "allowed", "dog 0.90")
NOTHING = Verdict("none", "low_confidence", "best allowed dog 0.10 < 0.50")
DENY = Verdict("deny", "forced_shut", "cat 0.80 >= 0.30")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_logic(**overrides: object) -> tuple[DoorLogic, FakeClock]:
    settings: dict[str, object] = {
        "allow": ["dog"],
        "deny": ["cat"],
        "debounce_frames": 2,
        "hold_open_seconds": 10.0,
    }
    settings.update(overrides)
    clock = FakeClock()
    return DoorLogic(Policy.model_validate(settings), clock), clock


def classify_result(predictions: dict[str, float], groups: dict[str, float]) -> ClassifyResult:
    return ClassifyResult.model_validate(
        {
            "model": {"name": "imagenet-mobilenetv2", "version": "1"},
            "predictions": [
                {"label": label, "index": i, "score": score}
                for i, (label, score) in enumerate(predictions.items())
            ],
            "groups": [{"name": name, "score": score} for name, score in groups.items()],
        }
    )


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- policy file -----------------------------------------------------------------


def test_example_policy_file_is_valid() -> None:
    policy = load_policy(EXAMPLE_POLICY)

    assert policy == Policy(allow=["dog"], deny=["cat"])


def test_every_policy_field_is_documented_in_the_example() -> None:
    text = EXAMPLE_POLICY.read_text()

    for field in Policy.model_fields:
        assert f"\n{field}:" in text, field


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("allow: [dog]\nmin_scor: 0.5\n", "min_scor: Extra inputs are not permitted"),
        ("allow: []\n", "allow: List should have at least 1 item"),
        ("deny: [cat]\n", "allow: Field required"),
        ("allow: [dog]\nmin_score: 0\n", "min_score: Input should be greater than 0"),
        ("allow: [dog]\nmin_score: 1.5\n", "min_score: Input should be less than or equal to 1"),
        ("allow: [dog]\ndebounce_frames: 0\n", "debounce_frames: Input should be greater than"),
        ("allow: [dog]\nhold_open_seconds: -1\n", "hold_open_seconds: Input should be greater"),
        ("allow: [dog, cat]\ndeny: [cat]\n", "names both allowed and denied: cat"),
        ("allow: ['  ']\n", "names must not be empty"),
        ("allow: [dog]\nuse_detect: maybe\n", "use_detect: Input should be a valid boolean"),
        ("- dog\n", "must hold a mapping of keys, got list"),
        ("", "must hold a mapping of keys, got NoneType"),
        ("allow: [dog\n", "is not valid YAML"),
    ],
)
def test_bad_policy_file_is_rejected_with_a_clear_message(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(content)

    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file .*nope.yaml"):
        load_policy(tmp_path / "nope.yaml")


# --- per-frame verdict -------------------------------------------------------------


def test_group_score_makes_a_frame_positive() -> None:
    policy = Policy(allow=["dog"], deny=["cat"], min_score=0.5)
    result = classify_result({"beagle": 0.4, "basset": 0.3}, {"dog": 0.85, "cat": 0.01})

    verdict = judge(policy, frame_scores(result))

    assert (verdict.kind, verdict.detail) == ("allow", "dog 0.85")


def test_denied_name_wins_over_an_allowed_one() -> None:
    policy = Policy(allow=["dog"], deny=["cat"], deny_score=0.3)
    result = classify_result({"beagle": 0.6}, {"dog": 0.6, "cat": 0.35})

    verdict = judge(policy, frame_scores(result))

    assert (verdict.kind, verdict.code) == ("deny", "forced_shut")


def test_low_confidence_is_not_positive() -> None:
    policy = Policy(allow=["bo"], deny=["not_bo"], min_score=0.7, deny_score=0.5)
    result = classify_result({"bo": 0.6, "not_bo": 0.4}, {})

    verdict = judge(policy, frame_scores(result))

    assert (verdict.kind, verdict.code) == ("none", "low_confidence")
    assert verdict.detail == "best allowed bo 0.60 < 0.70"


def test_label_outside_the_top_k_counts_as_zero() -> None:
    policy = Policy(allow=["beagle"], min_score=0.1)
    result = classify_result({"tabby": 0.9}, {})

    assert judge(policy, frame_scores(result)).kind == "none"


# --- decision logic ----------------------------------------------------------------


def test_door_opens_only_after_the_debounce_frames() -> None:
    logic, clock = make_logic(debounce_frames=3)

    first = logic.observe(ALLOW)
    clock.advance(1)
    second = logic.observe(ALLOW)
    clock.advance(1)
    third = logic.observe(ALLOW)

    assert [d.state for d in (first, second, third)] == ["closed", "closed", "open"]
    assert second.reason == "debouncing: dog 0.90 (2/3 frames)"
    assert third.reason == "allowed: dog 0.90 (3/3 frames)"


def test_a_negative_frame_restarts_the_debounce() -> None:
    logic, clock = make_logic(debounce_frames=2)

    logic.observe(ALLOW)
    logic.observe(NOTHING)

    assert logic.observe(ALLOW).state == "closed"
    assert logic.observe(ALLOW).state == "open"


def test_positive_frames_far_apart_are_not_consecutive() -> None:
    logic, clock = make_logic(debounce_frames=2, debounce_max_gap_seconds=5.0)

    logic.observe(ALLOW)
    clock.advance(5.5)

    assert logic.observe(ALLOW).state == "closed"
    clock.advance(5.0)
    assert logic.observe(ALLOW).state == "open"


def test_door_holds_open_then_closes_when_the_hold_runs_out() -> None:
    logic, clock = make_logic(debounce_frames=1, hold_open_seconds=10.0)

    assert logic.observe(ALLOW).state == "open"
    clock.advance(6)
    held = logic.observe(NOTHING)
    clock.advance(3.9)
    still = logic.tick()
    clock.advance(0.1)
    expired = logic.tick()

    assert (held.state, held.code) == ("open", "hold_open")
    assert still.state == "open"
    assert (expired.state, expired.code) == ("closed", "hold_expired")


def test_each_opening_frame_extends_the_hold() -> None:
    logic, clock = make_logic(debounce_frames=1, hold_open_seconds=10.0)

    logic.observe(ALLOW)
    clock.advance(8)
    logic.observe(ALLOW)
    clock.advance(8)

    assert logic.tick().state == "open"
    clock.advance(2)
    assert logic.tick().state == "closed"


def test_zero_hold_closes_at_the_next_tick() -> None:
    logic, clock = make_logic(debounce_frames=1, hold_open_seconds=0.0)

    assert logic.observe(ALLOW).state == "open"
    assert logic.tick().state == "closed"


def test_forced_shut_closes_an_open_door_and_cancels_the_hold() -> None:
    logic, clock = make_logic(debounce_frames=1, hold_open_seconds=30.0)
    logic.observe(ALLOW)

    shut = logic.observe(DENY)
    clock.advance(1)

    assert shut.reason == "forced_shut: cat 0.80 >= 0.30"
    assert logic.tick().state == "closed"
    assert logic.observe(NOTHING).state == "closed"


def test_error_closes_an_open_door_and_resets_the_debounce() -> None:
    logic, clock = make_logic(debounce_frames=2, hold_open_seconds=30.0)
    logic.observe(ALLOW)
    logic.observe(ALLOW)
    logic.observe(ALLOW)

    failed = logic.fail("service error: connection refused")

    assert failed.reason == "error: service error: connection refused"
    assert failed.state == "closed"
    assert logic.observe(ALLOW).state == "closed"


def test_low_confidence_frames_never_open_the_door() -> None:
    logic, clock = make_logic(debounce_frames=1)

    decisions = [logic.observe(NOTHING) for _ in range(5)]

    assert {d.state for d in decisions} == {"closed"}
    assert decisions[0].code == "low_confidence"


# --- retries -----------------------------------------------------------------------


def test_retries_back_off_exponentially_then_give_up() -> None:
    waits: list[float] = []
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise ArgosUnavailable("connection refused")

    with pytest.raises(ArgosUnavailable):
        with_retries(down, Backoff(attempts=5, base_seconds=0.5, max_seconds=3.0), waits.append)

    assert calls == 5
    assert waits == [0.5, 1.0, 2.0, 3.0]


def test_retry_succeeds_after_a_server_error() -> None:
    replies = iter([ArgosRequestError(503, "overloaded", "busy"), "ok"])

    def flaky() -> str:
        reply = next(replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    assert with_retries(flaky, Backoff(attempts=3), lambda _: None) == "ok"


def test_a_rejected_frame_is_not_retried() -> None:
    calls = 0

    def rejected() -> None:
        nonlocal calls
        calls += 1
        raise ArgosRequestError(422, "undecodable_image", "not an image")

    with pytest.raises(ArgosRequestError):
        with_retries(rejected, Backoff(attempts=3), lambda _: None)

    assert calls == 1


# --- audit log ---------------------------------------------------------------------


def test_audit_log_appends_one_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    path.parent.mkdir()
    path.write_text('{"earlier": true}\n')
    audit = AuditLog(path)

    audit.write({"frame": "a.jpg", "decision": "open", "reason": "allowed: dog 0.90"})
    audit.write({"frame": "b\nc.jpg", "decision": "closed", "reason": "forced_shut: cat"})

    lines = path.read_text().splitlines()
    assert len(lines) == 3
    second = json.loads(lines[1])
    assert list(second)[0] == "time"
    assert second["frame"] == "a.jpg"
    assert json.loads(lines[2])["frame"] == "b\nc.jpg"


def test_audit_log_lines_from_threads_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audits = [AuditLog(path), AuditLog(path)]
    padding = "x" * 2000

    def writer(n: int) -> None:
        for i in range(50):
            audits[n % 2].write({"writer": n, "i": i, "padding": padding})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 200
    assert {(r["writer"], r["i"]) for r in records} == {(n, i) for n in range(4) for i in range(50)}


# --- frame sources -----------------------------------------------------------------


def write_image(path: Path, mtime: float) -> None:
    path.write_bytes(b"\xff\xd8\xff" + path.name.encode())
    os.utime(path, (mtime, mtime))


def test_folder_source_returns_each_new_file_once_in_mtime_order(tmp_path: Path) -> None:
    write_image(tmp_path / "b.jpg", 100)
    write_image(tmp_path / "a.jpg", 200)
    write_image(tmp_path / ".partial.jpg", 50)
    (tmp_path / "notes.txt").write_text("not an image")
    source = FolderSource(tmp_path, settle_seconds=0)

    first = source.poll()
    again = source.poll()
    write_image(tmp_path / "c.PNG", 300)
    later = source.poll()

    assert [Path(f.name).name for f in first] == ["b.jpg", "a.jpg"]
    assert first[0].data == b"\xff\xd8\xffb.jpg"
    assert again == []
    assert [Path(f.name).name for f in later] == ["c.PNG"]
    assert source.poll() == []


def test_folder_source_can_skip_files_present_at_start(tmp_path: Path) -> None:
    write_image(tmp_path / "old.jpg", 100)
    source = FolderSource(tmp_path, settle_seconds=0, skip_existing=True)

    assert source.poll() == []
    write_image(tmp_path / "new.jpg", 200)
    assert [Path(f.name).name for f in source.poll()] == ["new.jpg"]


def test_folder_source_waits_for_files_to_settle(tmp_path: Path) -> None:
    now = [1000.0]
    write_image(tmp_path / "fresh.jpg", 999.8)
    source = FolderSource(tmp_path, settle_seconds=0.5, wall_clock=lambda: now[0])

    assert source.poll() == []
    now[0] = 1000.4
    assert [Path(f.name).name for f in source.poll()] == ["fresh.jpg"]


def test_file_source_returns_the_file_again_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "latest.jpg"
    write_image(path, 100)
    source = FileSource(path)

    assert len(source.poll()) == 1
    assert source.poll() == []
    write_image(path, 200)
    assert len(source.poll()) == 1
    path.unlink()
    missing = source.poll()
    assert missing[0].data is None and "cannot read" in (missing[0].error or "")
    assert source.poll() == []


# --- command driver ----------------------------------------------------------------


def test_command_driver_runs_the_configured_commands(tmp_path: Path) -> None:
    opened, closed = tmp_path / "opened flag", tmp_path / "closed"
    driver = CommandDriver(["touch", str(opened)], f"touch {closed}")

    driver.open()
    assert opened.exists() and not closed.exists()
    driver.close()
    assert closed.exists()


def test_command_driver_reports_a_failing_command() -> None:
    script = "import sys; sys.stderr.write('gpio busy'); sys.exit(3)"
    driver = CommandDriver([sys.executable, "-c", script], ["true"])

    with pytest.raises(DriverError, match="exited with status 3: gpio busy"):
        driver.open()


def test_command_driver_reports_a_missing_program_and_a_timeout() -> None:
    missing = CommandDriver(["/nonexistent/gpio-tool", "on"], ["true"])
    slow = CommandDriver([sys.executable, "-c", "import time; time.sleep(5)"], ["true"], 0.2)

    with pytest.raises(DriverError, match="cannot run /nonexistent/gpio-tool"):
        missing.open()
    with pytest.raises(DriverError, match="timed out after 0.2s"):
        slow.open()


# --- pet door wiring without a server ---------------------------------------------


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
