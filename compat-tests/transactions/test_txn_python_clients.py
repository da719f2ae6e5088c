"""Transactions with kafka-python 2.3.3 and aiokafka 0.14.0.

Each client commits one transaction, aborts one, and commits one that also
carries consumer-group offsets (send_offsets_to_transaction); its own
read_committed consumer must return exactly the committed records (in order),
its read_uncommitted consumer all of them, and librdkafka must agree."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTP
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTP
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from txn_helpers import READ_COMMITTED, READ_UNCOMMITTED, create_topic, read_all, wait_until

CALL_TIMEOUT_S = 15.0
INIT_TIMEOUT_S = 10.0

# (partition, value) per transaction; which ones commit.
PLAN = [
    ("commit", [(0, "c1-0"), (0, "c1-1"), (1, "c1-2")]),
    ("abort", [(0, "a1-0"), (1, "a1-1"), (1, "a1-2")]),
    ("commit+offsets", [(0, "c2-0"), (1, "c2-1")]),
    ("abort+offsets", [(1, "a2-0")]),
]
GROUP_OFFSET = 5  # committed for (topic, 0) by the committed transaction with offsets
ABORTED_GROUP_OFFSET = 9  # sent in the aborted one: must not stick


def expected(kind: str) -> dict[int, list[bytes]]:
    out = {0: [], 1: []}
    for action, items in PLAN:
        if kind == "all" or action.startswith("commit"):
            for p, v in items:
                out[p].append(v.encode())
    return out


def bounded(what, fn, *args, timeout_s: float = CALL_TIMEOUT_S):
    """Run a blocking call in a daemon thread and fail the test if it does not
    return in time: kafka-python's commit_transaction and abort_transaction
    wait without a timeout. `what` may be a callable (evaluated on failure)."""
    result: dict = {}

    def run():
        try:
            result["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - reported below
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout_s)
    what = what() if callable(what) else what
    if t.is_alive():
        pytest.fail(f"{what} did not return within {timeout_s}s", pytrace=False)
    if "error" in result:
        if isinstance(result["error"], AssertionError):
            raise result["error"]
        pytest.fail(f"{what} failed: {result['error']!r}", pytrace=False)
    return result.get("value")


def kafka_python_read(bootstrap: str, topic: str, isolation: str, count: int) -> dict[int, list[bytes]]:
    c = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, isolation_level=isolation,
        request_timeout_ms=30000, fetch_max_wait_ms=100,
    )
    try:
        tps = [KTP(topic, 0), KTP(topic, 1)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out = {0: [], 1: []}
        got = 0

        def poll():
            nonlocal got
            for tp, recs in c.poll(timeout_ms=200).items():
                out[tp.partition] += [r.value for r in recs]
                got += len(recs)
            return got >= count

        wait_until(poll, 20, f"{count} records ({isolation})", interval_s=0)
        for _ in range(5):  # nothing more may come
            poll()
        return out
    finally:
        c.close()


def test_kafka_python_transactions(broker, topic):
    create_topic(broker.bootstrap, topic, 2)
    group = f"kp-group-{topic}"
    p = KafkaProducer(
        bootstrap_servers=broker.bootstrap, transactional_id=f"kp-txid-{topic}", linger_ms=5,
        max_block_ms=int(INIT_TIMEOUT_S * 1000), request_timeout_ms=15000,
    )
    try:
        bounded("KafkaProducer.init_transactions (needs a transaction coordinator: FindCoordinator key_type=1, InitProducerId "
                "with a transactional_id)", p.init_transactions, timeout_s=INIT_TIMEOUT_S + 5)
        for action, items in PLAN:
            bounded("KafkaProducer.begin_transaction", p.begin_transaction)
            futures = [p.send(topic, key=v.encode(), value=v.encode(), partition=part) for part, v in items]
            bounded("KafkaProducer.flush", p.flush)
            offsets = [f.get(timeout=1).offset for f in futures]
            assert all(o >= 0 for o in offsets)
            if action == "abort":
                # While it is open, the LSO (read_committed end offset) lags the high watermark.
                rc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                                   isolation_level=READ_COMMITTED)
                ru = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                                   isolation_level=READ_UNCOMMITTED)
                try:
                    tp0 = KTP(topic, 0)
                    lso, high = rc.end_offsets([tp0])[tp0], ru.end_offsets([tp0])[tp0]
                finally:
                    rc.close()
                    ru.close()
                assert lso == offsets[0] and high == offsets[0] + 1, (lso, high, offsets)
            if action.endswith("+offsets"):
                offset = GROUP_OFFSET if action.startswith("commit") else ABORTED_GROUP_OFFSET
                bounded("KafkaProducer.send_offsets_to_transaction", p.send_offsets_to_transaction,
                        {KTP(topic, 0): OffsetAndMetadata(offset, "", -1)}, group)
            if action.startswith("commit"):
                bounded("KafkaProducer.commit_transaction", p.commit_transaction)
            else:
                bounded("KafkaProducer.abort_transaction", p.abort_transaction)
    finally:
        try:
            p.close(timeout=5)
        except Exception:  # noqa: BLE001 - a stuck close must not hide the failure above
            pass

    committed = expected("committed")
    assert kafka_python_read(broker.bootstrap, topic, READ_COMMITTED, 5) == committed
    assert kafka_python_read(broker.bootstrap, topic, READ_UNCOMMITTED, 9) == expected("all")
    rd = read_all(broker.bootstrap, topic, [0, 1], READ_COMMITTED)
    assert {q: [r.value for r in recs] for q, recs in rd.items()} == committed

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        offsets = admin.list_consumer_group_offsets(group)
    finally:
        admin.close()
    assert {tp: o.offset for tp, o in offsets.items()} == {KTP(topic, 0): GROUP_OFFSET}


async def aiokafka_read(bootstrap: str, topic: str, isolation: str, count: int) -> dict[int, list[bytes]]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         isolation_level=isolation, fetch_max_wait_ms=100)
    await c.start()
    try:
        tps = [AioTP(topic, 0), AioTP(topic, 1)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        out = {0: [], 1: []}
        got = 0
        async with asyncio.timeout(20):
            while got < count:
                for tp, recs in (await c.getmany(timeout_ms=200)).items():
                    out[tp.partition] += [r.value for r in recs]
                    got += len(recs)
        for _ in range(5):  # nothing more may come
            for tp, recs in (await c.getmany(timeout_ms=200)).items():
                out[tp.partition] += [r.value for r in recs]
        return out
    finally:
        await c.stop()


class _Abort(Exception):
    pass


async def aiokafka_transactions(bootstrap: str, topic: str, group: str, progress: list[str]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"aio-txid-{topic}", linger_ms=5,
                         request_timeout_ms=15000)
    progress.append("start")
    await p.start()
    try:
        # begin_transaction waits for the producer id (FindCoordinator key_type=1, InitProducerId with the
        # transactional id).
        progress.append("first begin_transaction (waits for InitProducerId)")
        await p.begin_transaction()
        progress.append("abort of the empty first transaction (aiokafka ends it locally)")
        await p.abort_transaction()
        for k, (action, items) in enumerate(PLAN):
            progress.append(f"transaction #{k} ({action})")
            try:
                async with p.transaction():  # commits on exit, aborts on an exception
                    for part, v in items:
                        await p.send_and_wait(topic, key=v.encode(), value=v.encode(), partition=part)
                    if action.endswith("+offsets"):
                        offset = GROUP_OFFSET if action.startswith("commit") else ABORTED_GROUP_OFFSET
                        progress.append(f"transaction #{k} ({action}): send_offsets_to_transaction")
                        await p.send_offsets_to_transaction({AioTP(topic, 0): offset}, group)
                    progress.append(f"transaction #{k} ({action}): {action.split('+')[0]}")
                    if action.startswith("abort"):
                        raise _Abort()
            except _Abort:
                pass
        progress.append("done")
    finally:
        await p.stop()


def test_aiokafka_transactions(broker, topic):
    create_topic(broker.bootstrap, topic, 2)
    group = f"aio-group-{topic}"
    progress: list[str] = []
    # In a thread of its own: when the broker does not answer, aiokafka's
    # transaction context manager awaits its abort forever, even when cancelled.
    bounded(
        lambda: f"AIOKafkaProducer transactions (last step reached: {progress[-1] if progress else None})",
        lambda: asyncio.run(aiokafka_transactions(broker.bootstrap, topic, group, progress)),
        timeout_s=45,
    )

    committed = expected("committed")
    assert asyncio.run(aiokafka_read(broker.bootstrap, topic, READ_COMMITTED, 5)) == committed
    assert asyncio.run(aiokafka_read(broker.bootstrap, topic, READ_UNCOMMITTED, 9)) == expected("all")
    rd = read_all(broker.bootstrap, topic, [0, 1], READ_COMMITTED)
    assert {q: [r.value for r in recs] for q, recs in rd.items()} == committed

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        offsets = admin.list_consumer_group_offsets(group)
    finally:
        admin.close()
    assert {tp: o.offset for tp, o in offsets.items()} == {KTP(topic, 0): GROUP_OFFSET}
