"""The imperative shell of Refinery: the Faust worker, Kafka tooling, web views and the CLI.

Nothing here holds learning logic; everything the service computes comes from `pipeline`.
Submodules are imported on demand so that `refinery --help` stays fast.
"""

__all__: list[str] = []  # the subpackages: worker, web, kafka, ingest, cli (and settings)
