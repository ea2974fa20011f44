"""The worker's HTTP API (JSON) and Prometheus endpoint, on Faust's web server.

Routes (every one but ``/healthz`` requires ``Authorization: Bearer <REFINERY_API_TOKEN>`` when
that token is set):

=========================================  =======================================================
``GET /healthz``                           the process is up
``GET /readyz``                            200 once every assigned partition is restored and none is stalled, else 503
``GET /metrics``                           Prometheus exposition
``GET /datasets``                          the datasets this worker owns
``GET /datasets/{dataset}/metrics``        the dataset's current MetricsSnapshot
``GET /datasets/{dataset}/suggestions``    ``?kind=check_label&label=L&limit=50``: a SuggestionList
``GET /datasets/{dataset}/curve``          ``?label=L&points=200``: the label's precision-recall curve
``POST /datasets/{dataset}/predict``       body: a Message; the prediction, without learning
``GET /datasets/{dataset}/thresholds``     every label's three thresholds, and their version
``GET /streams``                           the streams for automations in force (docs/streams.md)
``GET /streams/{name}``                    one stream's declaration
``PUT /streams/{name}``                    body: a Stream; declares or replaces it (400: why not)
``DELETE /streams/{name}``                 deletes a stream declared through the API
``GET /`` and ``GET /datasets/{dataset}``  HTML dashboard pages for people (`agents.web.pages`)
=========================================  =======================================================

A worker answers for the datasets it owns; another dataset gives 404 with a hint (with several
workers, ask the one that owns the dataset's partition).

`Api` holds the logic as plain ``(status, body)`` methods; `register` wires them as Faust views.
Every call into an engine runs in the worker's engine thread (`agents.worker.service.Service.in_thread`),
under its lock: a route never scores on the event loop, which heartbeats and commits must reach.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import orjson

from agents.worker.observability import CONTENT_TYPE
from agents.worker.streams import DeclarationError
from pipeline.engine import LABEL_KINDS, Engine, suggestion_list
from schemas import SUGGESTION_KINDS, Message, SchemaError, Stream
from schemas.events import SuggestionKind
from schemas.topics import stream_topic

if TYPE_CHECKING:
    from agents.worker.service import Service

__all__ = ["Api", "register"]

#: ``(HTTP status, JSON body)``: the body is any value orjson serialises.
Reply = tuple[int, Any]


def _int(raw: str | None, default: int) -> int:
    try:
        return max(2, int(raw)) if raw else default
    except ValueError:
        return default


def _error(status: int, message: str) -> Reply:
    return status, {"error": message}


class Api:
    """The API's answers, given the worker's `agents.worker.service.Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def authorised(self, header: str | None) -> bool:
        token = self.service.settings.api_token
        if not token:
            return True
        expected = f"Bearer {token}"
        return header is not None and hmac.compare_digest(header.encode("utf-8"), expected.encode("utf-8"))

    def healthz(self) -> Reply:
        return 200, {"status": "ok"}

    def readyz(self) -> Reply:
        s = self.service
        body = {
            "ready": s.ready,
            "role": s.options.role,
            "assigned": sorted(s.assigned or ()),
            "inputs": [f"{topic}:{partition}" for topic, partition in sorted(s.inputs)],
            "restored": s.restored,
            "stalled": s.stalled,
        }
        return (200 if s.ready else 503), body

    def datasets(self) -> Reply:
        rows = []
        for p, name in self.service.owned():
            metrics = self.service.latest_metrics.get(name)
            rows.append(
                {
                    "dataset": name,
                    "partition": p,
                    "model_version": None if metrics is None else metrics.model_version,
                    "reviewed": None if metrics is None else metrics.reviewed,
                }
            )
        return 200, {"datasets": rows}

    def _engine(self, dataset: str) -> Engine | None:
        return self.service.engine(dataset)

    def _missing(self, dataset: str) -> Reply:
        owned = ", ".join(sorted(name for _, name in self.service.owned())) or "none"
        return _error(404, f"dataset {dataset!r} is not owned by this worker (owned here: {owned})")

    async def metrics(self, dataset: str) -> Reply:
        engine = self._engine(dataset)
        if engine is None:
            return self._missing(dataset)
        # computed from a frozen copy beside the engine thread, as a publication's are
        snapshot = await self.service.read_frozen(engine, lambda frozen: frozen.metrics(now=time.time()))
        return 200, snapshot.to_dict()

    async def suggestions(self, dataset: str, query: Mapping[str, str]) -> Reply:
        engine = self._engine(dataset)
        if engine is None:
            return self._missing(dataset)
        kind = query.get("kind", "")
        if kind not in SUGGESTION_KINDS:
            return _error(400, f"kind: expected one of {', '.join(SUGGESTION_KINDS)}, got {kind!r}")
        label = query.get("label") or None
        if label is not None and kind not in LABEL_KINDS:
            return _error(400, f"label: {kind} lists take no label (only {', '.join(LABEL_KINDS)} do), got {label!r}")
        if label is not None and label not in engine.labels:  # a plain list, cheap to read on the loop
            return _error(404, f"label {label!r} is not in dataset {dataset!r}")
        try:
            limit = int(query.get("limit", 50))
        except ValueError:
            return _error(400, f"limit: expected an integer, got {query.get('limit')!r}")
        async with self.service.lock:
            listed = await self.service.in_thread(
                suggestion_list, engine, cast(SuggestionKind, kind), now=time.time(), label=label, limit=limit
            )
        return 200, listed.to_dict()

    async def curve(self, dataset: str, query: Mapping[str, str]) -> Reply:
        engine = self._engine(dataset)
        if engine is None:
            return self._missing(dataset)
        label = query.get("label")
        if not label:
            return _error(400, "label: required, e.g. ?label=Billing%20%3E%20Refund")
        if label not in engine.labels:  # a plain list, cheap to read on the loop
            return _error(404, f"label {label!r} is not in dataset {dataset!r}")
        async with self.service.lock:
            points = await self.service.in_thread(engine.curve, label, _int(query.get("points"), 200))
        return 200, {"dataset": dataset, "label": label, **points}

    async def predict(self, dataset: str, body: bytes) -> Reply:
        engine = self._engine(dataset)
        if engine is None:
            return self._missing(dataset)
        try:
            message = Message.decode(body, max_body_bytes=self.service.settings.max_body_bytes)
        except SchemaError as error:
            return _error(400, str(error))
        if message.dataset != dataset:
            return _error(400, f"message.dataset: expected {dataset!r} (the URL's dataset), got {message.dataset!r}")
        async with self.service.lock:
            prediction = await self.service.in_thread(engine.predict, message)
        return 200, prediction.to_dict()

    async def thresholds(self, dataset: str) -> Reply:
        engine = self._engine(dataset)
        if engine is None:
            return self._missing(dataset)
        async with self.service.lock:
            table = await self.service.in_thread(engine.threshold_table)
            version, model_version = engine.thresholds_version, engine.model_version
        return 200, {
            "dataset": dataset,
            "thresholds_version": version,
            "model_version": model_version,
            "labels": {label: row.to_dict() for label, row in table.items()},
        }

    # -- streams for automations (agents.worker.streams) --------------------------------------

    def _stream_view(self, stream: Stream) -> dict:
        registry = self.service.streams
        topic = self.service.settings.topic(stream_topic(stream.name))
        return {**stream.to_dict(), "topic": topic, "source": registry.source(stream.name)}

    def streams(self) -> Reply:
        return 200, {"streams": [self._stream_view(s) for s in self.service.streams.streams().values()]}

    def stream(self, name: str) -> Reply:
        stream = self.service.streams.streams().get(name)
        if stream is None:
            return _error(404, f"no stream {name!r} (GET /streams lists them)")
        return 200, self._stream_view(stream)

    async def put_stream(self, name: str, body: bytes) -> Reply:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return _error(400, f"stream: expected a JSON object, got invalid JSON ({error})")
        if isinstance(data, dict):
            data.setdefault("name", name)
        try:
            stream = Stream.from_dict(data)
        except SchemaError as error:
            return _error(400, str(error))
        if stream.name != name:
            return _error(400, f"stream.name: expected {name!r} (the URL's name), got {stream.name!r}")
        try:
            await self.service.declare_stream(stream, name)
        except DeclarationError as error:
            return _error(409, str(error))
        return 200, self._stream_view(stream)

    async def delete_stream(self, name: str) -> Reply:
        if name not in self.service.streams.streams():
            return _error(404, f"no stream {name!r} (GET /streams lists them)")
        try:
            await self.service.declare_stream(None, name)
        except DeclarationError as error:
            return _error(409, str(error))
        return 200, {"deleted": name}

    def exposition(self) -> bytes:
        return self.service.obs.exposition()


def register(app, service: Service) -> Api:
    """Add the API's routes to the Faust ``app``."""
    from faust.web import View

    from agents.web import pages, routes

    api = Api(service)
    html_pages = pages.Pages(service)
    bench = routes.register(app, service)  # the review workbench: sign-in, queues, search, live values

    def reply(view: View, result: Reply):
        status, body = result
        return view.bytes(orjson.dumps(body), content_type="application/json", status=status)

    def page(view: View, result: tuple[int, str]):
        status, html = result
        return routes.respond(view, routes.Reply(status, html))  # with the pages' security headers

    def guarded(handler):
        async def get(self, request, **kwargs):
            if not bench.allowed(request):  # the bearer token, or a signed-in browser session
                return reply(self, _error(401, "missing or wrong bearer token (REFINERY_API_TOKEN)"))
            return await handler(self, request, **kwargs)

        return get

    # The index is registered before anything else at "/" (Faust's own placeholder index there
    # comes later and never answers).
    @app.page("/")
    class IndexPage(View):
        async def get(self, request):
            if not bench.allowed(request):  # a browser signs in first
                return routes.respond(self, bench.login_redirect(request))
            return page(self, html_pages.index(**bench.chrome(bench.session(request))))

    @app.page("/datasets/{dataset}")
    class DatasetPage(View):
        async def get(self, request, dataset):
            if not bench.allowed(request):
                return routes.respond(self, bench.login_redirect(request))
            return page(
                self,
                await html_pages.dataset(dataset, charts=bench.dataset_charts, **bench.chrome(bench.session(request))),
            )

    @app.page("/healthz")
    class Healthz(View):
        async def get(self, request):
            return reply(self, api.healthz())

    @app.page("/readyz")
    class Readyz(View):
        @guarded
        async def get(self, request):
            return reply(self, api.readyz())

    @app.page("/metrics")
    class Metrics(View):
        @guarded
        async def get(self, request):
            return self.bytes(api.exposition(), content_type=CONTENT_TYPE.split(";")[0])

    @app.page("/datasets")
    class Datasets(View):
        @guarded
        async def get(self, request):
            return reply(self, api.datasets())

    @app.page("/datasets/{dataset}/metrics")
    class DatasetMetrics(View):
        @guarded
        async def get(self, request, dataset):
            return reply(self, await api.metrics(dataset))

    @app.page("/datasets/{dataset}/suggestions")
    class DatasetSuggestions(View):
        @guarded
        async def get(self, request, dataset):
            return reply(self, await api.suggestions(dataset, request.query))

    @app.page("/datasets/{dataset}/curve")
    class LabelCurve(View):
        @guarded
        async def get(self, request, dataset):
            return reply(self, await api.curve(dataset, request.query))

    @app.page("/datasets/{dataset}/thresholds")
    class DatasetThresholds(View):
        @guarded
        async def get(self, request, dataset):
            return reply(self, await api.thresholds(dataset))

    @app.page("/streams")
    class Streams(View):
        @guarded
        async def get(self, request):
            return reply(self, api.streams())

    @app.page("/streams/{name}")
    class OneStream(View):
        @guarded
        async def get(self, request, name):
            return reply(self, api.stream(name))

        @guarded
        async def put(self, request, name):
            return reply(self, await api.put_stream(name, await request.read()))

        @guarded
        async def delete(self, request, name):
            return reply(self, await api.delete_stream(name))

    @app.page("/datasets/{dataset}/predict")
    class Predict(View):
        @guarded
        async def post(self, request, dataset):
            return reply(self, await api.predict(dataset, await request.read()))

    return api
