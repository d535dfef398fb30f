"""Admin security and the body-size limit, against the real service.

The admin token opens /admin only as ``Authorization: Bearer <token>``, is compared in
constant time, and never shows in a log line, an error body, /stats or /metrics. A body over
the limit is refused before it is read whole: a huge Content-Length or an endless chunked
body gets 413 at once.
"""

from __future__ import annotations

import hmac
import socket
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchserve.config import Settings
from tests.reliability.models import make_row
from tests.reliability.support import (
    ResourceSampler,
    Service,
    Tally,
    check_server_counts,
    encode,
    outcome_of,
    quiet_log,
    report,
    request_id,
    service,
)
from tests.server.support import RecordingModel, recording_model, serving

pytestmark = pytest.mark.e2e

TOKEN = "reliability-admin-token-5f0e2c9a71"
BEARER = {"authorization": f"Bearer {TOKEN}"}
MAX_BODY = 64 * 1024
ENV = {
    "BATCHSERVE_ADMIN_TOKEN": TOKEN,
    "BATCHSERVE_LOG_LEVEL": "debug",
    "BATCHSERVE_MAX_BODY_BYTES": str(MAX_BODY),
}

# Every way of presenting the token that is not `Authorization: Bearer <token>`, with the
# status it gets, and a few wrong tokens.
WRONG_WAYS: list[tuple[dict[str, str], str, int]] = [
    ({}, "", 401),
    ({"x-admin-token": TOKEN}, "", 401),
    ({"x-api-key": TOKEN}, "", 401),
    ({"cookie": f"token={TOKEN}"}, "", 401),
    ({}, f"?token={TOKEN}", 401),
    ({"authorization": TOKEN}, "", 401),
    ({"authorization": f"Basic {TOKEN}"}, "", 401),
    ({"authorization": f"Token {TOKEN}"}, "", 401),
    ({"authorization": f"Bearer{TOKEN}"}, "", 401),
    ({"authorization": "Bearer"}, "", 401),
    ({"authorization": "Bearer wrong"}, "", 403),
    ({"authorization": f"Bearer {TOKEN[:-1]}"}, "", 403),
    ({"authorization": f"Bearer {TOKEN}x"}, "", 403),
    ({"authorization": f"Bearer {TOKEN.upper()}"}, "", 403),
    ({"authorization": f"Bearer {TOKEN} {TOKEN}"}, "", 403),
]


# -- admin ---------------------------------------------------------------------------------


def _paused(svc: Service) -> bool:
    return bool(svc.engine()["is_paused"])


def test_admin_routes_open_only_to_the_bearer_token_which_never_leaks(tmp_path: Path) -> None:
    bodies: list[str] = []
    with service(tmp_path, ENV) as svc, httpx.Client(base_url=svc.url, timeout=10) as http:
        for headers, query, status in WRONG_WAYS:
            for method, path in (("POST", "/admin/pause"), ("GET", "/admin/batch-size")):
                response = http.request(method, path + query, headers=headers)
                assert response.status_code == status, (headers, query, response.text)
                assert response.json()["code"] == ("unauthorized" if status == 401 else "forbidden")
                if status == 401:
                    assert response.headers["www-authenticate"].startswith("Bearer")
                bodies.append(response.text)
        assert not _paused(svc)

        # The token where it does not belong: in a path, a request id, a predict header.
        for response in (
            http.get(f"/{TOKEN}"),
            http.get("/stats", headers={"x-request-id": TOKEN}),
            http.post("/predict", json={"instances": [make_row(1)]}, headers={"x-priority": "x"}),
        ):
            bodies.append(response.text)

        paused = http.post("/admin/pause", headers=BEARER)
        assert paused.status_code == 200, paused.text
        assert _paused(svc)
        resumed = http.post("/admin/resume", headers=BEARER)
        assert resumed.status_code == 200, resumed.text
        assert not _paused(svc)
        size = http.put("/admin/batch-size", headers=BEARER, json={"batch_size": 4})
        assert size.status_code == 200, size.text
        observed = [http.get(path).text for path in ("/stats", "/metrics", "/health")]
        observed.append(http.get("/openapi.json").text)
        log = svc.log()

    assert TOKEN not in log
    assert "[redacted]" in log  # the token was in a logged path, and was replaced
    for text in [*bodies, paused.text, resumed.text, size.text, *observed]:
        assert TOKEN not in text
    assert '"admin_enabled":true' in observed[0].replace(" ", "")
    assert not quiet_log(log), quiet_log(log)[:5]


def test_admin_is_disabled_when_no_token_is_configured(tmp_path: Path) -> None:
    with service(tmp_path, {}) as svc, httpx.Client(base_url=svc.url, timeout=10) as http:
        answers = [
            http.post("/admin/pause", headers=headers)
            for headers in ({}, BEARER, {"authorization": "Bearer x"}, {"x-admin-token": "x"})
        ]
        paused = _paused(svc)
    assert [a.status_code for a in answers] == [403] * 4
    assert all("BATCHSERVE_ADMIN_TOKEN" in a.json()["error"] for a in answers)
    assert not paused


async def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing is too noisy to measure; instead, check that `hmac.compare_digest` sees the
    token and alone decides."""
    compared: list[tuple[bytes, bytes]] = []
    verdict: list[bool | None] = [None]
    real = hmac.compare_digest

    def spy(given: Any, expected: Any) -> bool:
        compared.append((given, expected))
        return real(given, expected) if verdict[0] is None else verdict[0]

    monkeypatch.setattr("batchserve.server.routes.admin.hmac.compare_digest", spy)
    settings = Settings(admin_token=TOKEN, warmup=False)
    async with serving(settings, recording_model(RecordingModel())) as (_, client):
        right = await client.get("/admin/batch-size", headers=BEARER)
        wrong = await client.get("/admin/batch-size", headers={"authorization": "Bearer no"})
        verdict[0] = False  # the real token, but the comparison says no
        overruled = await client.get("/admin/batch-size", headers=BEARER)
    assert (right.status_code, wrong.status_code, overruled.status_code) == (200, 403, 403)
    token = TOKEN.encode()
    assert compared == [(token, token), (b"no", token), (token, token)]


# -- the body-size limit -------------------------------------------------------------------


def _port(svc: Service) -> int:
    return int(svc.url.rsplit(":", 1)[1])


def _exchange(svc: Service, head: str, parts: Iterable[bytes]) -> tuple[int, dict[str, str], float]:
    """Send `head` and then `parts` on a raw connection, never finishing the body, and read
    the answer: its status, headers, and how long it took after the last byte sent."""
    with socket.create_connection(("127.0.0.1", _port(svc)), timeout=10) as sock:
        sock.sendall(head.encode("latin-1"))
        for part in parts:
            sock.sendall(part)
        sent = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - sent
    status_line, *header_lines = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, elapsed


def _head(route: str, ident: int, length_header: str) -> str:
    method, path = route.split()
    auth = f"authorization: {BEARER['authorization']}\r\n" if path.startswith("/admin") else ""
    return (
        f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"x-request-id: {request_id(ident)}\r\n{auth}{length_header}\r\n\r\n"
    )


def _chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    """`total` bytes of chunked encoding, without the terminating chunk."""
    for start in range(0, total, size):
        part = b" " * min(size, total - start)
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"


def test_oversized_bodies_are_refused_before_they_are_read_whole(tmp_path: Path) -> None:
    routes = ("POST /predict", "POST /v2/models/recorder/infer", "PUT /admin/batch-size")
    results: list[tuple[str, str, int, float]] = []
    tally = Tally()
    with service(tmp_path, ENV) as svc, ResourceSampler(svc.process) as resources:
        ids = iter(range(1, 100))
        for route in routes:
            huge = _exchange(svc, _head(route, next(ids), "content-length: 1000000000"), [b"{"])
            results.append((route, "content-length", huge[0], huge[2]))
            endless = _exchange(
                svc, _head(route, next(ids), "transfer-encoding: chunked"), _chunks(MAX_BODY + 1)
            )
            results.append((route, "chunked", endless[0], endless[2]))
        # Under the limit, a chunked body is read and answered.
        body, _ = encode([make_row(100)], "json")
        small = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        fine = _exchange(svc, _head("POST /predict", 100, "transfer-encoding: chunked"), [small])
        with httpx.Client(base_url=svc.url, timeout=10) as http:
            after = http.post("/predict", json={"instances": [make_row(101)]})
        tally.add(outcome_of(after, (101,), [0.0], 0.0, 0.0))
        predict_413 = sum(1 for route, _, _, _ in results if route == "POST /predict")
        metrics = check_server_counts(svc, tally, also=Counter({"413": predict_413, "200": 1}))
        log = svc.log()

    for route, how, status, elapsed in results:
        # The V2 protocol answers every refused request 400, a declared length included.
        expected = 400 if "/v2/" in route else 413
        assert status == expected, (route, how, status)
        report(route=route, how=how, refused_after_ms=round(elapsed * 1e3, 1))
    assert fine[0] == 200
    tally.check(1)
    assert tally.codes() == {"200": 1}
    assert resources.peak_rss_growth_mb() < 16, resources.samples
    assert metrics.value("batchserve_rejected_total", reason="too_large") >= predict_413
    assert not quiet_log(log), quiet_log(log)[:5]
