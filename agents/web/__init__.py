"""The worker's web server: the JSON API and Prometheus endpoint (`api`), the HTML pages (`pages`) and the
review workbench (`workbench`, wired by `routes`; sign-in in `session`, queues and leases in `queue`,
recent messages in `messages`, charts in `charts`, the worker as the pages see it in `service_view`)."""

__all__: list[str] = []  # import from the modules
