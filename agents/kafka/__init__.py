"""Kafka tooling: the local broker, topic administration and reading a range of offsets."""
