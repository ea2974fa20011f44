"""The streaming worker: the Faust app (`app`) and the plain modules it hands over to.

`service` (the worker's state and what it does), `partition` (one owned ``events`` partition),
`engines` (a partition's engines and exact-recovery bookkeeping), `sequencer`, `snapshots`,
`deadletter`, `delivery`, `retry`, `options`, `observability`. See docs/service.md.
"""

__all__: list[str] = []  # import from the modules: `agents.worker.app` pulls in Faust
