"""Shared helpers for the compat suite: the broker process fixture support
(broker.py), a hand-written Kafka wire-format codec for raw-socket tests
(wire.py) and a reference reader used to check what other clients wrote
(readback.py)."""
