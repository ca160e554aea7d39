"""Connections spread over workers: the shared counts, and the guarded protocol letting
connections go over real sockets (uvicorn in a thread as worker 0, a second
:class:`ConnectionBalance` on the same file standing for worker 1)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.http.balance import ConnectionBalance
from service.http.transport import GuardedHttpToolsProtocol
from tests.service.http.test_transport import (
    LIMITS,
    Seen,
    closed,
    guarded_server,
    make_app,
    read_reply,
)


def test_each_worker_sees_the_others_counts(tmp_path: Path) -> None:
    first, second = ConnectionBalance(tmp_path, 2, 0), ConnectionBalance(tmp_path, 2, 1)
    for _ in range(6):
        first.opened()
    assert not second.release_one()  # 0 against 6
    assert first.release_one()  # 6 against 0: over the slack of 2
    assert first.open == 5
    second.opened()
    second.opened()
    second.opened()
    assert not first.release_one()  # 5 against 3


def test_the_slack_grows_with_the_connections(tmp_path: Path) -> None:
    first, second = ConnectionBalance(tmp_path, 2, 0), ConnectionBalance(tmp_path, 2, 1)
    for _ in range(180):
        first.opened()
    for _ in range(160):
        second.opened()
    assert not first.release_one()  # 20 beyond, within 340 // 16 = 21
    first.opened()
    first.opened()
    assert first.release_one()


def test_the_least_busy_sibling_counts(tmp_path: Path) -> None:
    workers = [ConnectionBalance(tmp_path, 3, i) for i in range(3)]
    for _ in range(4):
        workers[0].opened()
        workers[1].opened()
    assert workers[0].release_one()  # 4 against the third worker's 0


def test_a_restarted_worker_starts_from_none(tmp_path: Path) -> None:
    before = ConnectionBalance(tmp_path, 2, 1)
    for _ in range(5):
        before.opened()
    ConnectionBalance(tmp_path, 2, 1)  # the same slot, after a restart
    first = ConnectionBalance(tmp_path, 2, 0)
    for _ in range(3):
        first.opened()
    assert first.release_one()  # 3 against 0, not against 5


def test_an_index_outside_the_workers_or_a_lone_worker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        ConnectionBalance(tmp_path, 2, 2)
    with pytest.raises(ValueError, match="two workers"):
        ConnectionBalance(tmp_path, 1, 0)


def test_a_link_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"\0" * 16)
    (tmp_path / "connections").symlink_to(elsewhere)
    with pytest.raises(OSError):
        ConnectionBalance(tmp_path, 2, 0)


@pytest.fixture()
def workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ConnectionBalance, ConnectionBalance, int]]:
    """Worker 0 serving over the guarded protocol, worker 1's counts, and the port."""
    served, sibling = ConnectionBalance(tmp_path, 2, 0), ConnectionBalance(tmp_path, 2, 1)
    monkeypatch.setattr(GuardedHttpToolsProtocol, "limits", LIMITS)
    monkeypatch.setattr(GuardedHttpToolsProtocol, "balance", served)
    with guarded_server(make_app(Seen())) as (_, port):
        yield served, sibling, port


def connect(port: int, count: int, balance: ConnectionBalance) -> list[socket.socket]:
    """``count`` connections, once the server has counted them all."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    deadline = time.monotonic() + 5
    while balance.open < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert balance.open == count
    return socks


def ask(sock: socket.socket) -> str:
    """One request; its reply's ``connection`` header."""
    sock.sendall(b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n")
    status, headers, _ = read_reply(sock)
    assert status == 200
    return headers.get("connection", "keep-alive")


def test_a_crowded_worker_lets_connections_go_until_even(
    workers: tuple[ConnectionBalance, ConnectionBalance, int],
) -> None:
    served, _, port = workers
    socks = connect(port, 5, served)
    answers = [ask(sock) for sock in socks]
    assert answers == ["close"] * 3 + ["keep-alive"] * 2  # 5 against 0, down to the slack
    assert all(closed(sock, 2) for sock in socks[:3])
    assert [ask(sock) for sock in socks[3:]] == ["keep-alive"] * 2
    assert served.open == 2  # the connections let go are not counted twice
    for sock in socks:
        sock.close()
    deadline = time.monotonic() + 5
    while served.open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert served.open == 0


def test_an_even_spread_keeps_every_connection(
    workers: tuple[ConnectionBalance, ConnectionBalance, int],
) -> None:
    served, sibling, port = workers
    for _ in range(3):
        sibling.opened()
    socks = connect(port, 5, served)
    assert [ask(sock) for sock in socks] == ["keep-alive"] * 5  # 5 against 3
    for sock in socks:
        sock.close()
