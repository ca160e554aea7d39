"""Frame sources: a watched folder, a single file."""

from __future__ import annotations

from pathlib import Path

from clients.petdoor.sources import FileSource, FolderSource
from tests.clients.support import write_image


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
