"""The control folder is the server's alone: folders and files that another user could have
made or changed are refused, and nothing outside the folder is ever written."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from service.repository.control import Controller
from service.repository.desired_state import (
    FOLDER_ENV,
    ControlDir,
    UnsafeControlDir,
    make_server_folder,
)
from service.repository.registry import Registry
from tests.service.repository.fakes import FakeModel, close, load

NOBODY = 65534
INITIAL = {"imagenet": ["1"]}
PLANTED = (
    "desired.json",
    "desired.lock",
    "worker-101.json",
    "desired.101.tmp",
    "worker-101.101.tmp",
)
"""The names a worker writes, among them the temporary names it once used."""

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as a second user needs root")


def start_worker(control: ControlDir) -> Controller[FakeModel]:
    registry: Registry[FakeModel] = Registry("imagenet")
    controller = Controller(control, registry, load, close, drain_timeout_s=1, pid=101)
    controller.start(INITIAL)
    return controller


def as_nobody(script: str, cwd: Path) -> None:
    """Run a shell script as uid 65534 in ``cwd``."""
    subprocess.run(["sh", "-c", script], cwd=cwd, user=NOBODY, group=NOBODY, extra_groups=[],
                   check=True, timeout=10)  # fmt: skip


@pytest.fixture()
def root_only(tmp_path: Path) -> Path:
    """A file only root may read or write, which a worker must never touch."""
    secret = tmp_path / "root-only"
    secret.write_text("root's own\n")
    secret.chmod(0o600)
    return secret


@pytest.fixture()
def shared_tmp(tmp_path: Path) -> Path:
    """A world-writable sticky folder, as /tmp is."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    folder.chmod(0o1777)
    return folder


@needs_root
def test_a_folder_another_user_made_with_links_to_a_root_file_is_refused(shared_tmp, root_only):
    links = " && ".join(f"ln -s {root_only} argos-planted/{name}" for name in PLANTED)
    as_nobody(f"mkdir -m 0700 argos-planted && {links}", shared_tmp)
    planted = shared_tmp / "argos-planted"
    assert planted.stat().st_uid == NOBODY

    with pytest.raises(UnsafeControlDir, match=rf"{planted} is owned by uid {NOBODY}"):
        start_worker(ControlDir(planted))
    assert root_only.read_text() == "root's own\n"
    assert sorted(p.name for p in planted.iterdir()) == sorted(PLANTED)


def test_a_control_folder_open_to_group_or_others_is_refused(tmp_path):
    folder = tmp_path / "control"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(UnsafeControlDir, match=r"open to group or others \(mode 777\)"):
        ControlDir(folder)
    assert list(folder.iterdir()) == []


def test_a_control_folder_that_is_a_symbolic_link_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "control").symlink_to(target)
    with pytest.raises(UnsafeControlDir, match="symbolic link"):
        ControlDir(tmp_path / "control")
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("name", ["desired.json", "desired.lock"])
def test_symbolic_links_at_the_file_names_stop_the_worker(tmp_path, root_only, name):
    control = ControlDir(tmp_path / "control")
    (control.path / name).symlink_to(root_only)
    with pytest.raises(UnsafeControlDir, match=rf"{control.path / name} is a symbolic link"):
        start_worker(control)
    assert root_only.read_text() == "root's own\n"
    assert (control.path / name).is_symlink()
    assert {p.name for p in control.path.iterdir()} <= {name, "desired.lock"}


def test_a_symbolic_link_at_a_status_name_is_replaced_not_followed(tmp_path, root_only):
    control = ControlDir(tmp_path / "control", is_alive=lambda pid: True)
    (control.path / "worker-101.json").symlink_to(root_only)
    controller = start_worker(control)
    try:
        assert root_only.read_text() == "root's own\n"
        assert not (control.path / "worker-101.json").is_symlink()
        assert [status.pid for status in control.statuses()] == [101]
    finally:
        controller.stop()


@needs_root
def test_a_base_folder_of_another_user_is_refused(tmp_path):
    base = tmp_path / "base"
    base.mkdir(mode=0o700)
    os.chown(base, NOBODY, NOBODY)
    with pytest.raises(UnsafeControlDir, match=rf"{base} \(ARGOS_CONTROL_DIR\) is owned by uid"):
        make_server_folder(base)
    assert list(base.iterdir()) == []


def test_a_base_folder_others_may_write_to_is_refused_unless_sticky(tmp_path, shared_tmp):
    base = tmp_path / "base"
    base.mkdir()
    base.chmod(0o777)
    with pytest.raises(UnsafeControlDir, match=r"writable by group or others \(mode 777\)"):
        make_server_folder(base)
    assert list(base.iterdir()) == []
    assert make_server_folder(shared_tmp).parent == shared_tmp


def test_each_server_gets_a_new_private_folder_of_an_unpredictable_name(tmp_path):
    base = tmp_path / "missing" / "base"
    first, second = make_server_folder(base), make_server_folder(base)
    assert first != second and first.parent == second.parent == base
    assert first.name.startswith("argos-") and str(os.getpid()) not in first.name
    for folder in (base, first, second):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_worker_without_its_servers_folder_says_how_to_start_argos(monkeypatch):
    monkeypatch.delenv(FOLDER_ENV, raising=False)
    with pytest.raises(RuntimeError, match="bentoml serve"):
        ControlDir.for_server(os.getppid())
