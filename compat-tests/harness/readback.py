"""Read a partition back with librdkafka (confluent-kafka), the reference
reader used to check what other clients wrote.

Uses manual assignment at explicit offsets: odradek has no group
coordinator yet. The Python wrapper insists on a group.id; with assign()
and no commits librdkafka still looks the coordinator up in the
background (see confluent_kafka/FINDINGS.md), which does not affect fetching.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

READ_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ReadRecord:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int


def consumer(bootstrap: str, **overrides) -> Consumer:
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": "odradek-compat-readback",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",  # an out-of-range start is a test bug, not something to paper over
    }
    config.update(overrides)
    return Consumer(config)


def watermarks(bootstrap: str, topic: str, partition: int = 0, timeout_s: float = 10.0) -> tuple[int, int]:
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
    finally:
        c.close()


def read_partition(
    bootstrap: str,
    topic: str,
    partition: int = 0,
    start_offset: int = 0,
    end_offset: int | None = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> list[ReadRecord]:
    """Every record in [start_offset, end_offset) (end defaults to the high
    watermark at the time of the call), in log order."""
    c = consumer(bootstrap)
    try:
        if end_offset is None:
            _, end_offset = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10.0)
        if end_offset <= start_offset:
            return []
        c.assign([TopicPartition(topic, partition, start_offset)])
        out: list[ReadRecord] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in c.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    if msg.error().code() == msg.error()._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consume error: {msg.error()}")
                if msg.offset() >= end_offset:
                    continue
                out.append(
                    ReadRecord(
                        offset=msg.offset(),
                        key=msg.key(),
                        value=msg.value(),
                        headers=tuple(msg.headers() or ()),
                        timestamp_ms=msg.timestamp()[1],
                    )
                )
            if out and out[-1].offset >= end_offset - 1:
                return out
        raise AssertionError(
            f"read {len(out)} records of {topic}[{partition}] offsets {start_offset}..{end_offset} "
            f"within {timeout_s}s; last offset read: {out[-1].offset if out else None}"
        )
    finally:
        c.close()
