"""Kafka tooling, one module per concern.

- `agents.kafka.broker`: the local broker process (fetch its jars, start, stop, status, answering);
- `agents.kafka.admin`: topic administration through one admin client context (create, delete,
  describe the topics of `schemas.topics.TOPICS`);
- `agents.kafka.ranges`: reading a range of offsets of one partition without a consumer group.

The `refinery kafka` command over them is `agents.cli.kafka`.
"""

__all__: list[str] = []
