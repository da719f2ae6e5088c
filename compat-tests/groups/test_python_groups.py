"""Consumer groups with kafka-python and aiokafka: subscribe, consume, commit, close, resume."""

from __future__ import annotations

import asyncio
import time

from conftest import create_topic, produce


def test_kafka_python_group(gbroker, topic):
    from kafka import KafkaConsumer, TopicPartition

    create_topic(gbroker, topic, 2)
    produce(gbroker, topic, [f"{i}".encode() for i in range(50)], partitions=2)
    group = f"kp-{topic}"

    def run(want):
        c = KafkaConsumer(topic, bootstrap_servers=gbroker.bootstrap, group_id=group, auto_offset_reset="earliest",
                          enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500,
                          consumer_timeout_ms=15000)
        got = []
        for msg in c:
            got.append(msg.value)
            if len(got) == want:
                break
        c.commit()
        committed = {p: c.committed(TopicPartition(topic, p)) for p in range(2)}
        c.close()
        return got, committed

    got, committed = run(50)
    assert sorted(got) == sorted(f"{i}".encode() for i in range(50))
    assert committed == {0: 25, 1: 25}
    produce(gbroker, topic, [b"late"], partitions=2)
    got, _ = run(1)
    assert got == [b"late"]


def test_aiokafka_group(gbroker, topic):
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    create_topic(gbroker, topic, 2)
    produce(gbroker, topic, [f"{i}".encode() for i in range(40)], partitions=2)
    group = f"aio-{topic}"

    async def run(want):
        c = AIOKafkaConsumer(topic, bootstrap_servers=gbroker.bootstrap, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500)
        await c.start()
        got = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < want and time.monotonic() < deadline:
                batches = await c.getmany(timeout_ms=500)
                for records in batches.values():
                    got.extend(r.value for r in records)
            await c.commit()
            committed = {p: await c.committed(TopicPartition(topic, p)) for p in range(2)}
        finally:
            await c.stop()
        return got, committed

    got, committed = asyncio.run(asyncio.wait_for(run(40), 60))
    assert sorted(got) == sorted(f"{i}".encode() for i in range(40))
    assert committed == {0: 20, 1: 20}
    produce(gbroker, topic, [b"late"], partitions=2)
    got, _ = asyncio.run(asyncio.wait_for(run(1), 60))
    assert got == [b"late"]
