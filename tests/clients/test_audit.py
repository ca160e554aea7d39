"""The JSON-lines audit log."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from clients.petdoor.audit import AuditLog


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


def test_a_file_name_that_is_not_utf8_is_written_as_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    name = os.fsdecode(b"/cam/caf\xe9.jpg")
    AuditLog(path).write({"frame": name})
    record = json.loads(path.read_text(encoding="utf-8"))
    assert os.fsencode(record["frame"]) == b"/cam/caf\xe9.jpg"
