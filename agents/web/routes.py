"""The workbench's routes on the worker's web server (Faust views), and its background task.

`register` wires `agents.web.workbench.Workbench`'s answers as views; `respond` turns a
`agents.web.workbench.Reply` into a response with the pages' security headers
(``Content-Security-Policy`` allowing only the worker's own script, ``nosniff``, no framing).
"""

from __future__ import annotations

from agents.web.service_view import worker_view
from agents.web.workbench import Reply, Workbench, WorkbenchOptions, json_reply

__all__ = ["Reply", "register", "respond"]


def respond(view, reply: Reply):
    """A Faust view's response for ``reply``, with the pages' security headers."""
    body = reply.body.encode("utf-8") if isinstance(reply.body, str) else reply.body
    headers = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", **reply.headers}
    if reply.content_type == "text/html":
        headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
        )
    return view.bytes(body, content_type=reply.content_type, status=reply.status, headers=headers)


def register(app, service) -> Workbench:
    """Add the workbench's routes and its background task to the Faust ``app``."""
    from faust.web import View

    bench = Workbench(worker_view(service), WorkbenchOptions.from_env())

    def reading(handler):
        """A page people read: with a token set, it needs the bearer header or a session."""

        async def get(self, request, **kwargs):
            if not bench.allowed(request):
                return respond(self, bench.login_redirect(request))
            return respond(self, await handler(request, **kwargs))

        return get

    @app.page("/login")
    class Login(View):
        async def get(self, request):
            return respond(self, bench.login_page(request))

        async def post(self, request):
            return respond(self, await bench.login(request))

    @app.page("/logout")
    class Logout(View):
        async def post(self, request):
            return respond(self, await bench.logout(request))

    @app.page("/datasets/{dataset}/review")
    class ReviewQueue(View):
        get = reading(bench.review_page)

        async def post(self, request, dataset):
            return respond(self, await bench.submit(request, dataset))

    @app.page("/datasets/{dataset}/search")
    class Search(View):
        get = reading(bench.search_page)

    @app.page("/datasets/{dataset}/label")
    class LabelPage(View):
        get = reading(bench.label_page)

    @app.page("/datasets/{dataset}/live")
    class Live(View):
        async def get(self, request, dataset):
            if not bench.allowed(request):
                return respond(self, json_reply({"error": "sign in or send the bearer token"}, 401))
            return respond(self, bench.live(dataset))

    @app.page("/live")
    class LiveIndex(View):
        async def get(self, request):
            if not bench.allowed(request):
                return respond(self, json_reply({"error": "sign in or send the bearer token"}, 401))
            return respond(self, bench.live_index())

    @app.page("/static/{name}")
    class Static(View):
        async def get(self, request, name):
            return respond(self, bench.static(name))

    @app.task
    async def workbench_feed():
        await bench.run()

    return bench
