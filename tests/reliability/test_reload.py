"""A model reload under load: 64 clients send for the whole reload from a model that doubles
to one that triples. No request fails, every answer is wholly one model's, every request sent
after the load returned is the new model's, readiness never drops; and a model that fails to
load or to warm up leaves the old one answering everything."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.reliability.models import NORMAL, expected_answer, make_row
from tests.reliability.support import (
    POLL_INTERVAL_S,
    PREDICT,
    Outcome,
    Service,
    Tally,
    check_server_counts,
    client,
    outcome_of,
    quiet_log,
    report,
    service,
)

pytestmark = pytest.mark.e2e

TOKEN = "reload-scenario-token-0123"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
CLIENTS = 64
ROWS = 3  # per request: a request's rows may run in different model calls
CALL_S = 0.01  # per model call: long enough for the queue to fill
BEFORE = 4  # requests per client, on average, answered before the load is asked for
AFTER = 3  # requests each client sends after the load returned
OLD, NEW = 2.0, 3.0  # what the models multiply a row by
# Batches of 8 rows split most 3-row requests across two model calls: a reload that switched
# models between two calls of the same engine would answer such a request with both.
ENV = {
    "BATCHSERVE_ADMIN_TOKEN": TOKEN,
    "BATCHSERVE_ACCESS_LOG": "false",
    "BATCHSERVE_MAX_BATCH_SIZE": "8",
}


@dataclass
class Reload:
    """What one reload-under-load scenario saw."""

    tally: Tally = field(default_factory=Tally)
    factor: dict[int, float | None] = field(default_factory=dict)  # first id -> who answered
    asked: float = 0.0  # time.monotonic() when the load was asked for
    returned: float = 0.0  # ... and when its answer came back
    load: httpx.Response | None = None
    readiness: Counter[int] = field(default_factory=Counter)

    def answered_by(self, factor: float, *, started_after: float = 0.0) -> list[Outcome]:
        return [
            o
            for o in self.tally.outcomes
            if self.factor.get(o.ids[0]) == factor and o.started > started_after
        ]


def answering_model(response: httpx.Response, ids: tuple[int, ...]) -> float | None:
    """OLD or NEW when the predictions are exactly that model's answers for `ids`."""
    got = np.asarray(orjson.loads(response.content)["predictions"], dtype=np.float64)
    for factor in (OLD, NEW):
        if np.array_equal(got, [expected_answer(i, NORMAL, factor) for i in ids]):
            return factor
    return None  # someone else's rows, or the two models' answers mixed


async def send_rows(http: httpx.AsyncClient, ids: tuple[int, ...]) -> tuple[Outcome, float | None]:
    body = orjson.dumps({"instances": [make_row(i) for i in ids]})
    started = time.monotonic()
    try:
        response = await http.post(
            PREDICT, content=body, headers={"content-type": "application/json"}
        )
    except httpx.HTTPError as exc:
        return Outcome(ids, None, type(exc).__name__, started=started), None
    latency = time.monotonic() - started
    if response.status_code != 200:
        return outcome_of(response, ids, [NORMAL] * len(ids), started, latency), None
    factor = answering_model(response, ids)
    return Outcome(ids, 200, correct=factor is not None, latency_s=latency, started=started), factor


async def reload_under_load(svc: Service, reference: str) -> Reload:
    seen = Reload()
    ids = itertools.count(1)
    enough = asyncio.Event()
    done = asyncio.Event()

    async def caller() -> None:
        after = 0
        async with client(svc.url, connections=1) as http:
            while after < AFTER:
                outcome, factor = await send_rows(http, tuple(next(ids) for _ in range(ROWS)))
                seen.tally.add(outcome)
                seen.factor[outcome.ids[0]] = factor
                if len(seen.tally.outcomes) >= CLIENTS * BEFORE:
                    enough.set()
                if seen.returned and outcome.started > seen.returned:
                    after += 1

    async def operator() -> None:
        await enough.wait()
        async with client(svc.url, connections=1) as http:
            seen.asked = time.monotonic()
            seen.load = await http.post("/admin/model", headers=ADMIN, json={"model": reference})
            seen.returned = time.monotonic()

    async def monitor() -> None:
        async with client(svc.url, connections=1) as http:
            while not done.is_set():
                seen.readiness[(await http.get("/health/ready")).status_code] += 1
                await asyncio.sleep(POLL_INTERVAL_S)  # the sampling interval

    watching = asyncio.create_task(monitor())
    await asyncio.gather(operator(), *(caller() for _ in range(CLIENTS)))
    done.set()
    await watching
    report(
        load_s=seen.returned - seen.asked,
        old_answers=len(seen.answered_by(OLD)),
        new_answers=len(seen.answered_by(NEW)),
        old_answers_sent_after_the_load_was_asked=len(
            seen.answered_by(OLD, started_after=seen.asked)
        ),
    )
    return seen


def served(svc: Service) -> dict[str, Any]:
    model: dict[str, Any] = svc.stats()["model"]
    return model


def test_a_reload_under_load_drops_nothing_and_mixes_no_answer(tmp_path: Path) -> None:
    with service(tmp_path, ENV, delay_s=CALL_S) as svc:
        seen = asyncio.run(reload_under_load(svc, "tests.reliability.models:tripler"))
        check_server_counts(svc, seen.tally)
        metrics = svc.metrics()
        model = served(svc)
        log = svc.log()
    assert seen.load is not None
    assert seen.load.status_code == 200, seen.load.text
    assert seen.load.json()["version"] == "2"
    seen.tally.check(len(seen.tally.outcomes))
    assert seen.tally.codes() == Counter({"200": len(seen.tally.outcomes)})
    late = [o for o in seen.tally.outcomes if o.started > seen.returned]
    assert len(late) >= CLIENTS * AFTER
    assert all(seen.factor[o.ids[0]] == NEW for o in late)
    assert seen.answered_by(OLD)  # the reload happened while the old model was answering
    assert set(seen.readiness) == {200}
    assert (model["name"], model["version"]) == ("recorder", "2")  # the served name stays
    assert metrics.value("batchserve_model_reloads_total", outcome="success") == 1
    assert metrics.value("batchserve_model_version_info", model="recorder", version="2") == 1
    assert quiet_log(log) == []


@pytest.mark.parametrize(
    "reference",
    ["tests.reliability.models:unloadable", "tests.reliability.models:failing"],
    ids=["cannot-load", "fails-warm-up"],
)
def test_a_reload_to_a_broken_model_keeps_the_old_one_answering(
    tmp_path: Path, reference: str
) -> None:
    with service(tmp_path, ENV, delay_s=CALL_S) as svc:
        seen = asyncio.run(reload_under_load(svc, reference))
        check_server_counts(svc, seen.tally)
        metrics = svc.metrics()
        model = served(svc)
    assert seen.load is not None
    assert seen.load.status_code == 422, seen.load.text
    assert seen.load.json()["code"] == "model_load_failed"
    seen.tally.check(len(seen.tally.outcomes))
    assert seen.tally.codes() == Counter({"200": len(seen.tally.outcomes)})
    assert len(seen.answered_by(OLD)) == len(seen.tally.outcomes)
    assert set(seen.readiness) == {200}
    assert model["version"] == "1"
    assert metrics.value("batchserve_model_reloads_total", outcome="failure") == 1
    assert metrics.value("batchserve_model_reloads_total", outcome="success") == 0
