"""What a broker outage costs the worker: CPU-seconds and log lines per outage-minute.

A throwaway broker of the benchmark's own (its own port and ``REFINERY_HOME`` in a temporary
directory, the jars linked from the project's ``.kafka/libs``: the shared broker is never
touched) serves one ``refinery worker`` subprocess. A producer thread sends Banking77 messages
(every third one reviewed) at ``--rate`` per second for the whole run, so produces to
``events`` and ``predictions`` are in flight when the broker goes: the case that made aiokafka
0.14's sender loop without backoff (issue 13, defect 3). Each run:

1. ``--warmup`` seconds of traffic with the broker up;
2. the broker stopped (SIGTERM by its pid file) for ``--outage`` seconds;
3. the broker started again, and the time until the worker predicts again (from the restart
   command, the broker's own start-up included).

Reported per run: the worker's CPU-seconds during the outage (``utime + stime`` of its
``/proc/<pid>/stat``), its log lines and bytes during the outage, each per outage-minute, and
the recovery time; the idle CPU of the same worker over the warm-up is printed beside them as the
baseline. ``--code DIR`` runs the worker from another checkout (for example the main branch
without the fix) to compare.

Run: ``.venv/bin/python bench/bench_outage.py [--runs 3] [--outage 30] [--rate 20] [--code DIR]``
(about a minute per run plus the broker's start-ups).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench_service import stop_process  # noqa: E402

from agents.ingest.datasets import banking77  # noqa: E402
from agents.kafka import admin, broker  # noqa: E402
from agents.settings import Settings  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def _free_port_pair() -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _lines(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return data.count(b"\n"), len(data)


class Traffic(threading.Thread):
    """Messages (and a review of every third) at ``rate`` per second until stopped; errors ignored."""

    def __init__(self, settings: Settings, rate: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.rate = settings, rate
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.settings.bootstrap, linger_ms=5, max_block_ms=1000)
        pairs = itertools.cycle(itertools.islice(banking77(), 2000))
        for i in itertools.count():
            if self.stop.is_set():
                break
            message, review = next(pairs)
            try:
                producer.send(self.settings.topic("messages"), key=b"banking77", value=message.encode())
                if i % 3 == 0:
                    review = dataclasses.replace(review, message=message)
                    producer.send(self.settings.topic("annotations"), key=b"banking77", value=review.encode())
                self.sent += 1
            except Exception:
                pass  # the broker is away: this record is simply not sent
            time.sleep(1 / self.rate)
        try:
            producer.close(timeout=5)
        except Exception:
            pass  # records still buffered when the run ends are dropped


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read()
    except OSError:
        return 0, b""


def _predicted(port: int) -> float:
    status, body = _get(port, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith('refinery_events_out_total{topic="') and "predictions" in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def run_once(settings: Settings, code: Path, workdir: Path, args) -> dict:
    port = _free_port_pair() + 2
    log_path = workdir / f"worker-{uuid.uuid4().hex[:6]}.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "REFINERY_KAFKA_BOOTSTRAP": settings.bootstrap,
        "REFINERY_TOPIC_PREFIX": settings.topic_prefix,
        "REFINERY_PARTITIONS": "1",
        "REFINERY_WEB_PORT": str(port),
        "REFINERY_DATA_DIR": str(workdir / f"data-{port}"),
        "REFINERY_METRICS_SECONDS": "1",
    }
    with open(log_path, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", "worker", "--loglevel", "info"],
            env=env,
            cwd=code,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    traffic = Traffic(settings, args.rate)
    try:
        deadline = time.monotonic() + 120
        while _get(port, "/readyz")[0] != 200:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"worker not ready; see {log_path}")
            time.sleep(0.5)
        idle0 = _cpu_seconds(worker.pid)
        time.sleep(5)
        idle = (_cpu_seconds(worker.pid) - idle0) / 5 * 60
        traffic.start()
        time.sleep(args.warmup)
        cpu0, (lines0, bytes0) = _cpu_seconds(worker.pid), _lines(log_path)
        broker.stop(settings, quiet=True)
        time.sleep(args.outage)
        cpu1, (lines1, bytes1) = _cpu_seconds(worker.pid), _lines(log_path)
        started = time.monotonic()
        broker.start(settings, quiet=True)
        before = _predicted(port)
        while _predicted(port) <= before and time.monotonic() - started < 180:
            time.sleep(0.5)
        recovery = time.monotonic() - started  # until the worker predicts again
        per_minute = 60 / args.outage
        return {
            "cpu_s_per_min": (cpu1 - cpu0) * per_minute,
            "lines_per_min": (lines1 - lines0) * per_minute,
            "kib_per_min": (bytes1 - bytes0) / 1024 * per_minute,
            "idle_cpu_s_per_min": idle,
            "recovery_s": recovery,
            "alive": worker.poll() is None,
            "log": str(log_path),
        }
    finally:
        traffic.stop.set()
        traffic.join(timeout=10)
        stop_process(worker)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the broker is away")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second sent throughout")
    parser.add_argument("--code", type=Path, default=PROJECT, help="the checkout whose worker runs")
    parser.add_argument("--keep", action="store_true", help="keep the worker logs (their directory is printed)")
    args = parser.parse_args(argv)

    shared = Settings.from_env()
    libs = Settings(external_bootstrap=None).home / "libs"
    if not (libs.is_dir() or (shared.home / "libs").is_dir()):
        print("the Kafka jars are missing: run `refinery kafka fetch`", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="refinery-outage-") as tmp:
        workdir = Path(tempfile.mkdtemp(prefix="refinery-outage-logs-")) if args.keep else Path(tmp)
        home = workdir / "kafka"
        home.mkdir()
        (home / "libs").symlink_to((shared.home / "libs") if (shared.home / "libs").is_dir() else libs)
        settings = dataclasses.replace(
            shared,
            external_bootstrap=None,
            home=home,
            kafka_port=_free_port_pair(),
            topic_prefix=f"outage{uuid.uuid4().hex[:6]}.",
            partitions=1,
        )
        broker.start(settings, quiet=True)
        try:
            admin.create_topics(settings)
            print(f"worker code: {args.code}; outage {args.outage:g} s, {args.rate:g} messages/s")
            print(
                f"{'run':>3} {'CPU s/min':>9} {'lines/min':>9} {'KiB/min':>8} {'idle CPU s/min':>14} {'resumed s':>10}"
            )
            for run in range(args.runs):
                r = run_once(settings, args.code.resolve(), workdir, args)
                print(
                    f"{run + 1:>3} {r['cpu_s_per_min']:>9.2f} {r['lines_per_min']:>9.0f} {r['kib_per_min']:>8.1f}"
                    f" {r['idle_cpu_s_per_min']:>14.2f} {r['recovery_s']:>10.1f}"
                    + ("" if r["alive"] else "  DIED")
                    + (f"  {r['log']}" if args.keep else ""),
                    flush=True,
                )
        finally:
            broker.stop(settings, quiet=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
