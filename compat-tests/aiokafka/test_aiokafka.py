"""aiokafka 0.14.0 against odradek: AIOKafkaProducer with
enable_idempotence=True, AIOKafkaConsumer with assign/seek (no group).

Each test runs its coroutine with asyncio.run, so no pytest plugin is needed."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from harness.readback import read_partition

TIMEOUT_S = 30


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT_S * 2))


def value(i: int) -> bytes:
    return f"value-{i}|".encode() + b"0123456789" * 15


async def produce(bootstrap: str, topic: str, count: int, compression: str | None = None) -> list[int]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,  # implies acks="all"
        compression_type=compression,
        linger_ms=5,
        request_timeout_ms=15000,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic, key=f"key-{i}".encode(), value=value(i), partition=0,
                headers=[("seq", str(i).encode()), ("client", b"aiokafka")],
            )
            for i in range(count)
        ]
        return [(await asyncio.wait_for(f, TIMEOUT_S)).offset for f in futures]
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, start: int, count: int) -> list:
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        out = []
        async with asyncio.timeout(TIMEOUT_S):
            while len(out) < count:
                batch = await consumer.getmany(tp, timeout_ms=500)
                out += batch.get(tp, [])
        return out
    finally:
        await consumer.stop()


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
def test_idempotent_produce_then_assign_and_seek(broker, topic, compression):
    assert run(produce(broker.bootstrap, topic, 60, compression)) == list(range(60))

    records = run(consume(broker.bootstrap, topic, 0, 60))
    assert [r.offset for r in records] == list(range(60))
    for i, r in enumerate(records):
        assert (r.key, r.value) == (f"key-{i}".encode(), value(i))
        assert list(r.headers) == [("seq", str(i).encode()), ("client", b"aiokafka")]

    tail = run(consume(broker.bootstrap, topic, 45, 15))
    assert [r.offset for r in tail] == list(range(45, 60))
    assert [r.key for r in read_partition(broker.bootstrap, topic)] == [f"key-{i}".encode() for i in range(60)]


def test_offset_lookups(broker, topic):
    run(produce(broker.bootstrap, topic, 8))

    async def lookups():
        tp = TopicPartition(topic, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([tp])
            begin = await consumer.beginning_offsets([tp])
            end = await consumer.end_offsets([tp])
            by_time = await consumer.offsets_for_times({tp: 0})
            await consumer.seek_to_end(tp)
            return begin[tp], end[tp], by_time[tp].offset, await consumer.position(tp)
        finally:
            await consumer.stop()

    assert run(lookups()) == (0, 8, 0, 8)
