"""Kafka tooling, one module per concern.

- `agents.kafka.broker`: the local broker process (fetch its jars, start, stop, status, answering);
- `agents.kafka.admin`: topic administration through one admin client context (create, delete,
  describe the topics of `schemas.topics.TOPICS`);
- `agents.kafka.ranges`: reading a range of offsets of one partition without a consumer group;
- `agents.kafka.security`: the client arguments (bootstrap, TLS, SASL) of aiokafka, kafka-python and
  Faust from one `agents.settings.KafkaSecurity`, and the one-line reason a broker refuses a client;
- `agents.kafka.secured`: TLS and SASL listeners for the local broker (``refinery kafka start --secured``).

The `refinery kafka` command over them is `agents.cli.kafka`.
"""

__all__: list[str] = []
