"""``/ready`` says 503 with reasons until the worker holds partitions, then 200."""

from __future__ import annotations

import re
import time

import pytest

from streams.admin import ensure_topics
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


def test_ready_flips_from_503_with_reasons_to_200(env, worker_factory):
    ensure_topics(env.settings)
    worker = worker_factory(wait_assigned=False)  # returns as soon as /health answers
    seen: list[tuple[int, dict]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status, body = worker.get("/ready")
        seen.append((status, body))
        if status == 200:
            break
        time.sleep(0.1)
    statuses = [status for status, _ in seen]
    assert statuses[-1] == 200 and seen[-1][1] == {"status": "ready"}
    assert 503 in statuses, "never observed the not-ready state"
    reasons = {reason for status, body in seen if status == 503 for reason in body["reasons"]}
    assert reasons and all(isinstance(reason, str) and reason for reason in reasons)
    assert worker.get("/health")[0] == 200
    # Ops get one line per rebalance and per table recovery, with how long each took.
    wait_until(lambda: "table recovery done in" in worker.log(), timeout=30,
               message="the recovery timing line")
    assert re.search(r"rebalance done in \d+\.\d\d s; assigned \d+ partitions", worker.log())
