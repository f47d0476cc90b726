"""``micromoment demo`` as a newcomer runs it: live recommendations, then Ctrl-C stops all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from streams.broker import free_port, port_open

pytestmark = pytest.mark.slow


def test_demo_shows_live_recommendations_and_ctrl_c_stops_everything(tmp_path):
    broker_port, web_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams", "demo", "--port", str(broker_port), "--web-port",
         str(web_port), "--rate", "40", "--show-every", "1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines: list[str] = []
    deadline = time.monotonic() + 150
    try:
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if sum("taste match" in seen for seen in lines) >= 3:
                break
        shown = "".join(lines)
        assert shown.count("taste match") >= 3, shown[-3000:]
        assert "fresh" in shown and "ms (event→recommendation)" in shown
        assert port_open("127.0.0.1", broker_port) and port_open("127.0.0.1", web_port)
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(lines) + rest
    assert process.returncode == 0, output[-3000:]
    assert "demo stopped: worker and broker are down." in output
    assert "Traceback" not in output
    assert not port_open("127.0.0.1", broker_port), "the broker outlived the demo"
    assert not port_open("127.0.0.1", web_port), "the worker outlived the demo"
    # Every item shown has a rank, an id, a finite score and a non-empty reason.
    items = [line for line in lines if re.match(r"^\s+\d+\. item-", line)]
    assert len(items) >= 15
    for line in items:
        match = re.match(r"^\s+\d+\. (item-\d+)\s+(-?\d+\.\d+)\s+(\S.*)$", line)
        assert match, line


def test_a_killed_demo_takes_its_broker_and_worker_with_it(tmp_path):
    broker_port, web_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams", "demo", "--port", str(broker_port), "--web-port",
         str(web_port), "--rate", "20"], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "producing synthetic events" not in process.stdout.readline():
            pass
        assert port_open("127.0.0.1", broker_port) and port_open("127.0.0.1", web_port)
        process.kill()  # no chance to clean up
        process.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (port_open("127.0.0.1", broker_port)
                                               or port_open("127.0.0.1", web_port)):
            time.sleep(0.5)
        assert not port_open("127.0.0.1", broker_port), "the broker outlived a killed demo"
        assert not port_open("127.0.0.1", web_port), "the worker outlived a killed demo"
    finally:
        if process.poll() is None:
            process.kill()
