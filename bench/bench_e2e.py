"""End to end, four ways, in one run: the transport, a naive Faust + River agent, the worker, the engine.

Every system gets the same events (``bench_service.stream``: Banking77 messages in a shuffled
order, a third of them reviewed ``--review-lag`` messages later, the message inline), as the same
JSON bytes on the ``messages`` and ``annotations`` topics of a fresh topic prefix on the broker,
and writes to its ``predictions`` topic:

* **transport**: bare aiokafka, one hop: read each record, ``orjson.loads``, ``orjson.dumps``,
  write it to ``predictions`` (a subprocess: ``bench_e2e.py --child transport``);
* **naive**: a Faust app as most Faust + River code is written: one agent per input topic,
  River's ``BagOfWords | OneVsRestClassifier(LogisticRegression())`` called per event
  (``predict_proba_one`` then a prediction sent per message, ``learn_one`` per review);
* **worker**: ``refinery worker`` (``python -m agents.cli worker``, default settings);
* **engine**: `pipeline.Refiner` in-process on the same events (``bench_service.apply``).

The load is sent and the predictions read by one `bench_service.LoadClient` per system (an
aiokafka producer and consumer on an event loop of the harness's own thread; records sent with
2 ms of linger); the paced runs also keep each message's latency over time (``series`` in the
JSON).

Per system: the **maximum rate** (all events sent at once; events / time from the first send to
the last prediction), **CPU per event** (user + system time of its process over that run; its
inverse, events per CPU second, is the figure that moves least with the machine's load) and
**peak RSS** (``VmHWM``), and **lag over time** (messages sent minus predictions received, every
0.5 s). Then the **latency** from produce to prediction (p50 / p95 / p99, per message id) with
events sent at a steady 50% and 90% of *the worker's* maximum rate for ``--paced-seconds``.
Each Kafka system runs alone (the machine has 2 cores), one after the other, on its own topics.

The machine is shared and its load moves: compare the ratios printed at the end, measured in
the same run. Output: a table, and ``--json`` (default ``bench/e2e.json``) with every figure and
the lag series.

For scaling curves: ``--labels N`` maps the reviews' labels onto N labels (as ``bench_speed.py``
does for the engine alone), ``--corpus enron`` sends long emails instead of chat lines,
``--datasets N`` spreads the events over N datasets, ``--workers N`` runs N workers in one group,
``--split`` runs the worker as two processes in one group: one of the role ``sequencer`` and one
of the role ``engine`` (docs/service.md, *Roles*; CPU and RSS summed). ``--rounds N`` sends the
stream N times in the flood (ids renamed each round; the engine in-process gets the same N
rounds): a flood of 5,333 events lasts under 2 s, which start-up transients dominate.

Run: ``.venv/bin/python bench/bench_e2e.py [--messages 2000] [--paced-seconds 10] [--json FILE]``
(broker at ``REFINERY_KAFKA_BOOTSTRAP``, default 127.0.0.1:9092; about 5 minutes on a loaded machine).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402
from bench_service import DATASET, LoadClient, Worker, apply, read_values, stream  # noqa: E402

from agents.kafka import admin  # noqa: E402
from agents.settings import PROJECT_ROOT, Settings  # noqa: E402
from agents.worker.sizes import SizeBudget  # noqa: E402
from pipeline import Refiner, RefinerConfig  # noqa: E402
from schemas import DeadLetter, Message  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


# -- the children: transport and naive agent ------------------------------------------------------


async def _transport(settings: Settings) -> None:
    """Bare aiokafka: every input record, decoded and encoded again, written to ``predictions``."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, group_id=None)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5, max_batch_size=262_144)
    await consumer.start()
    await producer.start()
    out = settings.topic("predictions")
    consumer.assign(
        [TopicPartition(settings.topic(t), p) for t in ("messages", "annotations") for p in range(settings.partitions)]
    )
    await consumer.seek_to_beginning()
    try:
        while True:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                for record in records:
                    await producer.send(out, orjson.dumps(orjson.loads(record.value)), key=record.key)
    finally:
        await producer.stop()
        await consumer.stop()


def _naive(settings: Settings) -> None:
    """A Faust app calling River per event, as most Faust + River code is written."""
    import faust
    from river import feature_extraction, linear_model, multiclass

    app = faust.App(
        f"{settings.topic_prefix}naive",
        broker=f"kafka://{settings.bootstrap}",
        datadir=str(Path(os.environ["E2E_WORKDIR"]) / "naive-data"),
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
    )
    messages = app.topic(settings.topic("messages"), value_serializer="json")
    annotations = app.topic(settings.topic("annotations"), value_serializer="json")
    predictions = app.topic(settings.topic("predictions"), value_serializer="json")
    model = feature_extraction.BagOfWords(lowercase=True) | multiclass.OneVsRestClassifier(
        linear_model.LogisticRegression()
    )

    def text(message: dict) -> str:
        return f"{message.get('subject', '')}\n{message.get('body', '')}"

    @app.agent(messages)
    async def predict(stream):
        async for message in stream:
            proba = model.predict_proba_one(text(message))
            label = max(proba, key=proba.get) if proba else None
            await predictions.send(
                key=message["dataset"], value={"message_id": message["id"], "label": label, "confidences": proba}
            )

    @app.agent(annotations)
    async def learn(stream):
        async for review in stream:
            if review.get("labels"):
                model.learn_one(text(review["message"]), review["labels"][0]["name"])

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


def _child_engine(messages: int, review_lag: int, corpus: str, labels: int, rounds: int = 1) -> None:
    """The engine in-process, in its own process (its CPU and RSS alone): one JSON line."""
    import resource

    events = _flood(stream(messages, 1 / 3, review_lag, seed=0, corpus=corpus, labels=labels), rounds)
    engine = Refiner(DATASET, config=RefinerConfig(), seed=0)
    cpu, start = time.process_time(), time.perf_counter()
    apply(engine, events)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(orjson.dumps({"events": len(events), "seconds": seconds, "cpu": cpu, "peak_rss_mb": rss}).decode())


# -- the harness -----------------------------------------------------------------------------------


def _proc(pid: int) -> tuple[float, float | None]:
    """(CPU seconds so far, peak RSS MB) of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    peak = None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


class Arrivals:
    """The arrival time of each message id's (first) prediction on ``predictions``, read by a
    `bench_service.LoadClient` (which also sends the events)."""

    def __init__(self, settings: Settings) -> None:
        self.seen: dict[str, float] = {}
        self.client = LoadClient(settings, self._read)

    def _read(self, records: list, now: float) -> None:
        for record in records:
            data = orjson.loads(record.value)
            # a prediction (worker, naive) names its message; the transport's copy of a message
            # is the message; its copy of a review is not counted
            key = data["message_id"] if "confidences" in data else data.get("id")
            if key is not None:
                self.seen.setdefault(key, now)


def _flood(events: list, rounds: int, datasets: int = 1) -> list:
    """The flood: ``events`` ``rounds`` times, each round's message ids its own (``#flood<r>``;
    the first round's tag is ``flood``, as with one round)."""
    return [e for r in range(rounds) for e in _renamed(events, f"flood{r or ''}", datasets)]


def _renamed(events: list, tag: str, datasets: int = 1) -> list:
    """The events with message ids made unique to one phase (``id#tag``) and, with ``datasets``
    > 1, spread over that many datasets (``banking77-k``, by message, its review with it)."""
    out = []
    for event in events:
        message = event if isinstance(event, Message) else event.message
        dataset = DATASET if datasets == 1 else f"{DATASET}-{zlib.crc32(message.id.encode()) % datasets}"
        message = dataclasses.replace(message, id=f"{message.id}#{tag}", dataset=dataset)
        if isinstance(event, Message):
            out.append(message)
        else:
            out.append(dataclasses.replace(event, message_id=message.id, message=message, dataset=dataset))
    return out


class System:
    """One Kafka system under test on its own topics: started, fed, measured, stopped."""

    def __init__(
        self, name: str, base: Settings, workdir: Path, *, workers: int = 1, datasets: int = 1, split: bool = False
    ) -> None:
        self.name = name
        self.datasets = datasets
        self.settings = dataclasses.replace(base, topic_prefix=f"e2e{uuid.uuid4().hex[:8]}.{name}.")
        admin.create_topics(self.settings)
        self.workers: list[Worker] = []
        env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT_ROOT),
            "REFINERY_TOPIC_PREFIX": self.settings.topic_prefix,
            "REFINERY_KAFKA_BOOTSTRAP": self.settings.bootstrap,
            "E2E_WORKDIR": str(workdir),
        }
        if name == "worker":
            roles = [role for _ in range(workers) for role in (("sequencer", "engine") if split else (None,))]
            for k, role in enumerate(roles):
                (workdir / f"worker{k}").mkdir()
                self.workers.append(Worker(self.settings, workdir / f"worker{k}", role))
            self.process = self.workers[0].process
        else:
            log = open(workdir / f"{name}.log", "ab")  # noqa: SIM115  # closed with the process
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--child", name], env=env, cwd=PROJECT_ROOT, stdout=log, stderr=log
            )
        self.arrivals = Arrivals(self.settings)

    def payloads(self, events: list) -> list[tuple[str, str | None, bytes, bytes]]:
        return [
            (
                self.settings.topic("messages" if isinstance(e, Message) else "annotations"),
                e.id if isinstance(e, Message) else None,
                e.encode(),
                e.dataset.encode(),
            )
            for e in events
        ]

    def usage(self) -> tuple[float, float | None]:
        """(CPU seconds, peak RSS MB) of the system's processes, summed."""
        figures = [_proc(p.pid) for p in ([w.process for w in self.workers] or [self.process])]
        peaks = [peak for _, peak in figures if peak is not None]
        return sum(cpu for cpu, _ in figures), (sum(peaks) if peaks else None)

    def wait_for(self, ids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        pending = list(ids)
        while pending:
            pending = [i for i in pending if i not in self.arrivals.seen]
            if not pending:
                break
            for process in [w.process for w in self.workers] or [self.process]:
                if process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({process.returncode})")
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def warm_up(self, events: list, timeout: float = 180.0) -> None:
        """Send a few events until a prediction comes back: the system is running and assigned."""
        for worker in self.workers:
            worker.wait_ready()
        warm = _renamed(events[: 20 * self.datasets], "warm", self.datasets)
        self.send(warm)
        if not self.wait_for([e.id for e in warm if isinstance(e, Message)], timeout):
            raise RuntimeError(f"{self.name}: no prediction after {timeout} s")

    def send(self, events: list, rate: float | None = None) -> dict[str, float]:
        """Send ``events`` (at ``rate`` events/s, or at once); the send time of each message id."""
        return self.arrivals.client.send(self.payloads(events), rate)

    def flood(self, events: list, timeout: float) -> dict:
        """All events at once: rate, CPU per event, peak RSS, lag over time."""
        ids = [e.id for e in events if isinstance(e, Message)]
        cpu0, _ = self.usage()
        lag: list[tuple[float, int]] = []
        done = threading.Event()

        def sample(start: float) -> None:
            while not done.is_set():
                arrived = sum(1 for i in ids if i in self.arrivals.seen)
                lag.append((round(time.perf_counter() - start, 2), len(ids) - arrived))
                done.wait(0.5)

        start = time.perf_counter()
        sampler = threading.Thread(target=sample, args=(start,), daemon=True)
        sampler.start()
        self.send(events)
        finished = self.wait_for(ids, timeout)
        done.set()
        sampler.join()
        last = max((self.arrivals.seen[i] for i in ids if i in self.arrivals.seen), default=time.perf_counter())
        cpu1, peak = self.usage()
        seconds = last - start
        return {
            "events": len(events),
            "seconds": seconds,
            "rate": len(events) / seconds if finished else None,
            "finished": finished,
            "cpu_per_event_ms": (cpu1 - cpu0) / len(events) * 1000,
            "peak_rss_mb": peak,
            "lag": lag,
        }

    def paced(self, events: list, rate: float, timeout: float) -> dict:
        """Events at a steady ``rate``: produce-to-prediction latency per message, in ms."""
        sent = self.send(events, rate)
        finished = self.wait_for(list(sent), timeout)
        latencies = sorted((self.arrivals.seen[i] - t) * 1000 for i, t in sent.items() if i in self.arrivals.seen)
        out: dict = {"rate": rate, "messages": len(sent), "answered": len(latencies), "finished": finished}
        if latencies:
            q = statistics.quantiles(latencies, n=100, method="inclusive")
            out.update(p50=q[49], p95=q[94], p99=q[98], max=latencies[-1])
            first = min(sent.values())
            out["sent_seconds"] = max(sent.values()) - first  # the rate actually sent
            out["series"] = sorted(  # (seconds since the first send, latency ms) per message
                (round(t - first, 3), round((self.arrivals.seen[i] - t) * 1000, 1))
                for i, t in sent.items()
                if i in self.arrivals.seen
            )
        return out

    def dead_letters(self) -> dict[str, int]:
        """The worker's dead letters so far, counted by error and the setting named (a refusal
        names the cap it applied: ``limit (REFINERY_MAX_LABELS_PER_DATASET)``); empty: none."""
        counts: collections.Counter[str] = collections.Counter()
        for value in read_values(self.settings, self.settings.topic("deadletter")):
            letter = DeadLetter.decode(value)
            setting = re.search(r"REFINERY_[A-Z_]+", letter.reason)
            counts[f"{letter.error} ({setting.group()})" if setting else letter.error] += 1
        return dict(counts)

    def stop(self, keep_topics: bool) -> None:
        self.arrivals.client.stop()
        for worker in self.workers:
            worker.stop()
        if not self.workers:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if not keep_topics:
            admin.delete_topics(self.settings)


def _engine(messages: int, review_lag: int, corpus: str, labels: int, rounds: int = 1) -> dict:
    run = subprocess.run(
        [
            *(sys.executable, __file__, "--child", "engine", "--messages", str(messages)),
            *("--review-lag", str(review_lag), "--corpus", corpus, "--labels", str(labels)),
            *("--rounds", str(rounds)),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    figures = orjson.loads(run.stdout.strip().splitlines()[-1])
    return {
        "events": figures["events"],
        "seconds": figures["seconds"],
        "rate": figures["events"] / figures["seconds"],
        "cpu_per_event_ms": figures["cpu"] / figures["events"] * 1000,
        "peak_rss_mb": figures["peak_rss_mb"],
    }


def _fmt(value, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="Banking77 messages per flood (default 2000)")
    parser.add_argument("--review-lag", type=int, default=20)
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="seconds of each paced run")
    parser.add_argument("--systems", default="transport,naive,worker", help="Kafka systems, in order")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", default=str(Path(__file__).with_name("e2e.json")))
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (same group); CPU and RSS summed")
    parser.add_argument(
        "--rounds", type=int, default=1, help="the flood sends the stream this many times (ids renamed each round)"
    )
    parser.add_argument(
        "--split", action="store_true", help="the worker as a sequencer process and an engine process (roles)"
    )
    parser.add_argument("--datasets", type=int, default=1, help="spread the events over this many datasets")
    parser.add_argument("--no-engine", action="store_true", help="skip the in-process engine")
    parser.add_argument(
        "--corpus", choices=("banking77", "enron"), default="banking77", help="chat lines or long emails (1,702)"
    )
    parser.add_argument("--labels", type=int, default=0, help="map the reviews' labels onto this many (0: as given)")
    parser.add_argument(
        "--max-rate",
        type=float,
        help="pace at 50%% and 90%% of this many events/s instead of the worker's flood rate "
        "(the same rates in runs compared side by side)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    base = Settings.from_env()
    if args.child == "engine":
        _child_engine(args.messages, args.review_lag, args.corpus, args.labels, args.rounds)
        return 0
    if args.child == "transport":
        asyncio.run(_transport(base))
        return 0
    if args.child == "naive":
        _naive(base)
        return 0

    import tempfile

    events = stream(args.messages, 1 / 3, args.review_lag, seed=0, corpus=args.corpus, labels=args.labels)
    print(
        f"{len(events) * args.rounds:,} events per flood ({args.rounds} x {args.messages:,} {args.corpus} messages"
        f"{f', {args.labels} labels' if args.labels else ''}); broker {base.bootstrap}"
    )
    results: dict = {
        "events": len(events) * args.rounds,
        "systems": {},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    results.update(workers=args.workers, datasets=args.datasets, corpus=args.corpus, labels=args.labels or None)
    results.update(split=args.split, rounds=args.rounds)
    _size_for_labels(base, args.labels)
    if not args.no_engine:
        flood = _engine(args.messages, args.review_lag, args.corpus, args.labels, args.rounds)
        results["systems"]["engine"] = {"flood": flood}
        print(f"engine     {results['systems']['engine']['flood']['rate']:,.0f} events/s")
    order = args.systems.split(",")
    order = ["worker"] + [s for s in order if s != "worker"]  # the worker's rate sets the paced rates
    rates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as workdir:
        for name in order:
            system = System(name, base, Path(workdir), workers=args.workers, datasets=args.datasets, split=args.split)
            try:
                system.warm_up(events)
                flood = system.flood(_flood(events, args.rounds, args.datasets), args.timeout)
                print(f"{name:10} {_fmt(flood['rate'])} events/s, {flood['cpu_per_event_ms']:.2f} ms CPU per event")
                entry = results["systems"][name] = {"flood": flood, "paced": []}
                if name == "worker":
                    top = args.max_rate or flood["rate"] or len(events) / flood["seconds"]
                    rates = [0.5 * top, 0.9 * top]
                for share, rate in zip((50, 90), rates, strict=True):
                    count = max(50, int(rate * args.paced_seconds))
                    # events repeat when the run is longer than one flood: each round gets ids of its own
                    # (a repeated id once matched a late send to an early prediction: negative latencies)
                    paced_events = [
                        event
                        for start in range(0, count, len(events))
                        for event in _renamed(
                            events[: min(len(events), count - start)], f"p{share}r{start // len(events)}", args.datasets
                        )
                    ]
                    paced = system.paced(paced_events, rate, args.timeout)
                    paced["share"] = share
                    entry["paced"].append(paced)
                    print(
                        f"{'':10} at {rate:,.0f}/s ({share}% of the worker's max): p50 {_fmt(paced.get('p50'))} "
                        f"p95 {_fmt(paced.get('p95'))} p99 {_fmt(paced.get('p99'))} ms"
                    )
                if name == "worker":  # a refused event is work the worker did not do: not like for like
                    letters = entry["dead_letters"] = system.dead_letters()
                    if letters:
                        print(f"{'':10} {_refused(letters)}")
            finally:
                system.stop(args.keep_topics)
    Path(args.json).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    _table(results)
    print(f"\nJSON: {args.json}")
    return 0


def _size_for_labels(base: Settings, labels: int) -> None:
    """Size the workers (they inherit the environment) for ``--labels`` over the default cap of
    labels per dataset, as a deployment with many labels would: the cap raised to ``labels``
    and, so that a prediction of that many labels fits a record, label names of at most 32
    characters (the mapped names ``L<k>`` are shorter). The engine in-process has no caps."""
    if labels <= base.max_labels_per_dataset or "REFINERY_MAX_LABELS_PER_DATASET" in os.environ:
        return
    sized = {"REFINERY_MAX_LABELS_PER_DATASET": str(labels)}
    if "REFINERY_MAX_LABEL_CHARS" not in os.environ:
        sized["REFINERY_MAX_LABEL_CHARS"] = "32"
    os.environ.update(sized)
    problems = SizeBudget.of(Settings.from_env()).problems()
    if problems:
        raise SystemExit(f"--labels {labels}: {problems[0]}")
    print(
        f"the worker runs with {' '.join(f'{k}={v}' for k, v in sized.items())} (at the default "
        f"{base.max_labels_per_dataset} labels per dataset it would refuse the reviews of the labels over it)"
    )


def _refused(letters: dict[str, int]) -> str:
    """The warning printed when the worker dead-lettered events (`System.dead_letters`)."""
    kinds = ", ".join(f"{kind}: {count:,}" for kind, count in sorted(letters.items()))
    return (
        f"WARNING: the worker dead-lettered {sum(letters.values()):,} events ({kinds}); its figures "
        "are not comparable with the engine's (raise the cap named, docs/configuration.md)"
    )


def _table(results: dict) -> None:
    systems = results["systems"]
    worker = systems.get("worker", {}).get("flood", {}).get("rate")
    print()
    worker_cpu = systems.get("worker", {}).get("flood", {}).get("cpu_per_event_ms")
    print(
        "| system | events/s | worker's rate / its | CPU ms/event | events per CPU s | its CPU / worker's | peak RSS MB "
        "| max lag | p50 / p95 / p99 ms at 50% | at 90% |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in ("transport", "naive", "worker", "engine"):
        if name not in systems:
            continue
        flood = systems[name]["flood"]
        paced = {p["share"]: p for p in systems[name].get("paced", [])}
        lag = max((n for _, n in flood.get("lag", [])), default=None)

        def lat(share: int, paced: dict = paced) -> str:
            p = paced.get(share)
            if p is None or "p50" not in p:
                return "-"
            unfinished = "" if p["finished"] else f" ({p['answered']}/{p['messages']} answered)"
            return f"{p['p50']:,.0f} / {p['p95']:,.0f} / {p['p99']:,.0f}{unfinished}"

        ratio = f"{worker / flood['rate']:.2f}" if worker and flood.get("rate") else "-"
        cpu = flood["cpu_per_event_ms"]
        cpu_ratio = f"{cpu / worker_cpu:.2f}" if worker_cpu and cpu else "-"
        print(
            f"| {name} | {_fmt(flood.get('rate'))} | {ratio} | {cpu:.3f} | {_fmt(1000 / cpu if cpu else None)} | "
            f"{cpu_ratio} | {_fmt(flood.get('peak_rss_mb'))} | {_fmt(lag, ',')} | {lat(50)} | {lat(90)} |"
        )
    letters = systems.get("worker", {}).get("dead_letters")
    if letters:
        print(f"\n{_refused(letters)}")


if __name__ == "__main__":
    sys.exit(main())
