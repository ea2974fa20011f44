"""The worker's web server: the JSON API and Prometheus endpoint (`api`) and the HTML pages (`pages`)."""

__all__: list[str] = []  # import from the modules
