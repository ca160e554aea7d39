"""Key rings and where a worker listens."""

from __future__ import annotations

import socket
from pathlib import Path

from service.keys import KeyRing, Scope, ScopeKeys, digest, listening_beyond_loopback


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_holds_the_scopes_it_is_listed_in() -> None:
    ring = KeyRing.from_settings(["infer-1", "both"], None, ["admin-1", "both"], None)
    assert ring.scopes_of("infer-1") == {Scope.INFER}
    assert ring.scopes_of("admin-1") == {Scope.ADMIN}
    assert ring.scopes_of("both") == {Scope.INFER, Scope.ADMIN}
    assert ring.scopes_of("infer-") == set() and ring.scopes_of("") == set()
    assert ring.configured(Scope.INFER) and ring.configured(Scope.ADMIN)
    assert not KeyRing.from_settings([], None, [], None).configured(Scope.ADMIN)


def test_only_digests_are_kept() -> None:
    keys = ScopeKeys(Scope.INFER, frozenset({digest("secret-key")}), None)
    assert b"secret-key" not in repr(keys).encode() and keys.digests() == {digest("secret-key")}


def test_a_key_file_is_read_again_once_a_second_and_fails_closed(tmp_path: Path) -> None:
    path, clock = tmp_path / "keys", Clock()
    path.write_text("# comment\n\nkey-a\n  key-b  \n")
    keys = ScopeKeys(Scope.ADMIN, frozenset(), path, clock)
    assert keys.configured and keys.digests() == {digest("key-a"), digest("key-b")}
    path.write_text("key-c\n")
    clock.now += 0.5
    assert keys.digests() == {digest("key-a"), digest("key-b")}  # not yet looked at again
    clock.now += 0.6
    assert keys.digests() == {digest("key-c")}
    path.write_text("")
    clock.now += 1.1
    assert keys.digests() == frozenset() and keys.configured  # empty: no key works
    path.unlink()
    clock.now += 1.1
    assert keys.digests() == frozenset()


def test_listening_beyond_loopback_is_noticed() -> None:
    with socket.socket() as everywhere, socket.socket() as loopback:
        everywhere.bind(("0.0.0.0", 0))
        loopback.bind(("127.0.0.1", 0))
        loopback.listen()
        assert listening_beyond_loopback() == []  # bound but not listening: not a server
        everywhere.listen()
        assert listening_beyond_loopback() == ["0.0.0.0"]
