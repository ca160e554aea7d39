"""Keys and scopes in-process: every route of the app's own route table, tried as an
attacker would, plus rotation, model control off by default, cross-site requests and CORS."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, generate_latest
from starlette.routing import Mount

from service.http.auth import app_routes, route_scope
from service.keys import RELOAD_INTERVAL_S, Scope
from tests.service.http.conftest import MakeClient
from tests.service.http.test_classify import png

INFER_KEY, ADMIN_KEY, UNKNOWN_KEY = "infer-key-1", "admin-key-1", "not-a-key-of-this-server"
KEY_OF = {Scope.INFER: INFER_KEY, Scope.ADMIN: ADMIN_KEY}
OTHER = {Scope.INFER: Scope.ADMIN, Scope.ADMIN: Scope.INFER}
PATH_VALUES = {"name": "colours", "version": "1", "tag": "shades", "path": "nothing-here"}
"""Values for the routes' path parameters: served models, so right keys reach the handler."""


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture()
def keyed(make_client: MakeClient) -> TestClient:
    """A server with infer and admin keys, whose client sends none by default."""
    client = make_client(
        {"colours": ["1"], "shades": ["1"]}, infer_keys=[INFER_KEY], admin_keys=[ADMIN_KEY]
    )
    client.headers.pop("Authorization")
    return client


def concrete(path: str) -> str:
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: PATH_VALUES[m.group(1)], path)


def operations(client: TestClient) -> list[tuple[str, str, Scope | None]]:
    """(method, path, scope) of every route in the app's route table."""
    found = []
    for route in app_routes(client.app):
        scope = route_scope(route)
        if isinstance(route.original_route, Mount):
            found.append(("GET", f"{route.path}/", scope))
            continue
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                found.append((method, concrete(route.path), scope))
    return found


def test_every_route_declares_its_scope(keyed: TestClient) -> None:
    unowned = [(m, p) for m, p, scope in operations(keyed) if scope is None]
    assert not unowned, f"routes without a scope: {unowned}"
    scopes = {p: scope for _, p, scope in operations(keyed)}
    assert scopes["/classify"] is scopes["/v2/models/colours/infer"] is Scope.INFER
    assert scopes["/classify/render"] is scopes["/detect/render"] is Scope.INFER
    assert scopes["/v2/repository/models/shades/unload"] is Scope.ADMIN
    assert scopes["/v2/repository/index"] is Scope.ADMIN
    assert scopes["/v2/health/ready"] is scopes["/"] is Scope.PUBLIC


def test_every_route_times_every_kind_of_key(keyed: TestClient) -> None:
    """no key, unknown key, wrong scope, right scope → 401, 401, 403, neither."""
    checked = 0
    for method, path, scope in operations(keyed):
        replies = {
            "none": keyed.request(method, path),
            "unknown": keyed.request(method, path, headers=bearer(UNKNOWN_KEY)),
        }
        if scope is Scope.PUBLIC:
            for kind, reply in replies.items():
                assert reply.status_code not in (401, 403), (method, path, kind, reply.text)
                assert reply.status_code < 500, (method, path, kind, reply.text)
            continue
        assert scope is not None
        replies["wrong"] = keyed.request(method, path, headers=bearer(KEY_OF[OTHER[scope]]))
        replies["right"] = keyed.request(method, path, headers=bearer(KEY_OF[scope]))
        statuses = {kind: reply.status_code for kind, reply in replies.items()}
        assert statuses["none"] == statuses["unknown"] == 401, (method, path, statuses)
        assert statuses["wrong"] == 403, (method, path, statuses)
        assert statuses["right"] not in (401, 403) and statuses["right"] < 500, (
            method, path, replies["right"].text,
        )  # fmt: skip
        assert replies["none"].headers["WWW-Authenticate"].startswith("Bearer")
        checked += 1
    assert checked >= 12


def test_refusals_speak_each_apis_error_shape(keyed: TestClient) -> None:
    argos = keyed.post("/classify", content=png((1, 2, 3)), headers={"Content-Type": "image/png"})
    assert argos.status_code == 401
    assert argos.json()["error"] == "unauthorized"
    assert "Authorization: Bearer <key>" in argos.json()["detail"]
    v2 = keyed.post("/v2/repository/index", headers=bearer(INFER_KEY))
    assert v2.status_code == 403
    assert list(v2.json()) == ["error"] and "not admin" in v2.json()["error"]
    header = keyed.post(
        "/classify",
        content=png((1, 2, 3)),
        headers={"Content-Type": "image/png", "X-API-Key": INFER_KEY},
    )
    assert header.status_code == 200, header.text


def test_refusals_are_counted_by_route_template_and_reason_never_by_key(
    keyed: TestClient,
) -> None:
    keyed.post("/v2/models/colours/infer", headers=bearer(UNKNOWN_KEY))
    exposition = generate_latest(REGISTRY).decode()
    assert re.search(
        r'argos_auth_refusals_total\{reason="unknown_key",route="/v2/models/\{name\}/infer"\} '
        r"[1-9]",
        exposition,
    ), exposition
    assert UNKNOWN_KEY not in exposition and INFER_KEY not in exposition


def test_without_admin_keys_model_control_is_off(make_client: MakeClient) -> None:
    client = make_client(admin_keys=[])
    reply = client.post("/v2/repository/models/colours/unload")
    assert reply.status_code == 403
    assert "ARGOS_ADMIN_KEYS_FILE" in reply.json()["error"]
    assert client.post("/v2/repository/index").status_code == 403
    assert client.get("/v2/models/colours/ready").status_code == 200  # inference stays open


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Content-Type": "text/plain"},
        {"Origin": "https://evil.example", "Content-Type": "text/plain", **bearer(ADMIN_KEY)},
        {"Sec-Fetch-Site": "cross-site", **bearer(ADMIN_KEY)},
        {"Content-Type": "text/plain", **bearer(ADMIN_KEY)},
    ],
)
def test_a_cross_site_simple_request_unloads_nothing(
    keyed: TestClient, headers: dict[str, str]
) -> None:
    reply = keyed.post("/v2/repository/models/colours/unload", content=b"{}", headers=headers)
    assert reply.status_code in (400, 401, 403), reply.text  # /v2 answers 415 as 400
    assert "colours" in keyed.get("/models", headers=bearer(INFER_KEY)).json()["default"]
    assert keyed.app.state.worker.is_ready()


def test_this_servers_own_page_may_control_models(keyed: TestClient) -> None:
    reply = keyed.post(
        "/v2/repository/models/shades/unload",
        headers={"Origin": "http://testserver", **bearer(ADMIN_KEY)},
    )
    assert reply.status_code == 200, reply.text


def test_keys_rotate_without_a_restart(make_client: MakeClient, tmp_path: Path) -> None:
    key_file = tmp_path / "infer"
    key_file.write_text("# rotated monthly\nold-key\n")
    client = make_client(infer_keys_file=key_file)

    def status(key: str) -> int:
        return client.get("/v2/models/colours/ready", headers=bearer(key)).status_code

    assert (status("old-key"), status("new-key")) == (200, 401)
    key_file.write_text("new-key\nnext-key\n")
    time.sleep(RELOAD_INTERVAL_S + 0.1)
    assert (status("old-key"), status("new-key"), status("next-key")) == (401, 200, 200)
    key_file.unlink()  # a key file that goes missing fails closed
    time.sleep(RELOAD_INTERVAL_S + 0.1)
    assert status("new-key") == 401


def test_no_cors_headers_unless_configured(make_client: MakeClient) -> None:
    origin = {"Origin": "https://app.example"}
    plain = make_client().get("/v2/models/colours/ready", headers=origin)
    assert "access-control-allow-origin" not in plain.headers
    allowed = make_client(cors_origins=["https://app.example"])
    preflight = allowed.options(
        "/classify",
        headers=origin | {"Access-Control-Request-Method": "POST",
                          "Access-Control-Request-Headers": "authorization"},
    )  # fmt: skip
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"


def test_unloading_the_default_model_turns_readiness_off_and_says_why(
    make_client: MakeClient,
) -> None:
    client = make_client({"colours": ["1"], "shades": ["1"]})
    assert client.post("/v2/repository/models/colours/unload").status_code == 200
    worker = client.app.state.worker
    assert not worker.is_ready()
    assert worker.unready_because() == ["models named at start-up are not loaded: colours"]
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/models").json()["default"] is None
    unnamed = client.post(
        "/classify", content=png((1, 2, 3)), headers={"Content-Type": "image/png"}
    )
    assert unnamed.status_code == 503 and "'colours' is not loaded" in unnamed.json()["detail"]
    named = client.post(
        "/classify?model=shades", content=png((1, 2, 3)), headers={"Content-Type": "image/png"}
    )
    assert named.status_code == 200
    assert client.post("/v2/repository/models/colours/load").status_code == 200
    assert worker.is_ready() and client.get("/models").json()["default"] == "colours"


def test_api_routes_have_no_route_without_an_owner_even_when_added_later(
    keyed: TestClient,
) -> None:
    """The check above is generated from the route table, so a new route is in it."""

    @keyed.app.get("/debug/state")
    async def debug_state() -> dict[str, str]:
        return {}

    unowned = [route.path for route in app_routes(keyed.app) if route_scope(route) is None]
    assert unowned == ["/debug/state"]
