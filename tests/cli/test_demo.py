"""`refinery demo` (the README's run command) on a real broker: it streams, serves, and stops what it started."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from agents.settings import PROJECT_ROOT

pytestmark = pytest.mark.kafka


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/status") as status:  # a zombie is gone for our purpose
        return "zombie" not in status.read()


def test_the_demo_streams_serves_its_pages_and_ctrl_c_stops_its_worker(topics, tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "REFINERY_KAFKA_BOOTSTRAP": topics.bootstrap,
        "REFINERY_TOPIC_PREFIX": topics.topic_prefix,
        "REFINERY_HOME": str(tmp_path),
    }
    demo = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "demo", "--limit", "60", "--rate", "200", "--web-port", str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, "the demo exited early:\n" + "".join(lines)
            lines.append(line)
            if line.startswith("done:"):
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in output and "done: 60 messages" in output
        worker = int(re.search(r"worker: pid (\d+)", output).group(1))
        deadline = time.monotonic() + 60
        page = b""
        while time.monotonic() < deadline and b"banking77" not in page:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
            except OSError:
                pass
            time.sleep(0.5)
        assert b"banking77" in page, "the dashboard never listed the streamed dataset"
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "Ctrl-C left the demo's worker running"
    finally:
        if demo.poll() is None:
            demo.kill()
