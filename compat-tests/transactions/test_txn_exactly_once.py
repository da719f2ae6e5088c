"""Exactly-once consume-transform-produce with confluent-kafka, through a
SIGKILLed worker and a kill -9 of the broker.

eos_transformer.py (a separate process: read_committed group consumer,
manual offsets, transactional producer, send_offsets_to_transaction +
commit_transaction per batch) copies an input topic of numbered records to an
output topic. The first worker is killed with SIGKILL while a transaction is
open with its records already in the output log; a second worker with the
same transactional.id and group takes over (its init_transactions aborts the
zombie's transaction), and the broker is killed with kill -9 and restarted
(same port and data dir) while that worker runs. At the end, read_committed,
the output holds every input record exactly once, in input order per
partition, and the group's committed offsets are the input's ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from txn_helpers import READ_COMMITTED, READ_UNCOMMITTED, create_topic, plain_producer, read_all, watermarks

TRANSFORMER = Path(__file__).resolve().parent / "eos_transformer.py"
FAST_GROUPS = ["--set", "group.initial.rebalance.delay.ms=0", "--set", "group.min.session.timeout.ms=1000"]
RECORDS = 2000
# ODRADEK_EOS_DEBUG=eos,protocol puts librdkafka's debug log of the second worker into its log file.
WORKER_DEBUG = ["--debug", os.environ["ODRADEK_EOS_DEBUG"]] if os.environ.get("ODRADEK_EOS_DEBUG") else []
PARTITIONS = [0, 1, 2]


class Worker:
    def __init__(self, log: Path, args: list[str]):
        self.log = log
        self.out = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(TRANSFORMER), *args], stdout=self.out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def committed(self) -> int:
        done = [int(line.split()[1]) for line in self.lines() if line.startswith(("committed ", "done "))]
        return max(done, default=0)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.lines()[-lines:])

    def stuck(self, what: str) -> AssertionError:
        """Dump the stuck worker's Python stacks (faulthandler on SIGUSR1) into its log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
        return AssertionError(f"worker: {what}:\n{self.tail(60)}")

    def wait_for(self, predicate, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}) before {what}:\n{self.tail()}")
            time.sleep(0.02)
        raise self.stuck(f"no {what} within {timeout_s}s")

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.out.close()


def test_consume_transform_produce_exactly_once_across_sigkill_and_broker_kill9(broker_factory, topic, tmp_path):
    broker = broker_factory(FAST_GROUPS)
    in_topic, out_topic = f"{topic}-in", f"{topic}-out"
    create_topic(broker.bootstrap, in_topic, len(PARTITIONS))
    create_topic(broker.bootstrap, out_topic, len(PARTITIONS))
    p = plain_producer(broker.bootstrap)
    for i in range(RECORDS):
        p.produce(in_topic, key=f"k{i}".encode(), value=f"{i:05d}".encode(), partition=i % len(PARTITIONS))
    assert p.flush(30) == 0
    group, txid = f"eos-{topic}", f"eos-txid-{topic}"
    common = [broker.bootstrap, in_topic, out_topic, group, txid, str(RECORDS)]

    # 1. First worker: commits some batches, then holds a transaction open
    #    with its records flushed to the output log; SIGKILL there.
    first = Worker(tmp_path / "worker1.log", common + ["--batch", "50", "--hold-open-after", "300"])
    try:
        first.wait_for(lambda: any(line.startswith("holding") for line in first.lines()), 30,
                       "open transaction after 300 committed records")
    finally:
        first.kill9()
    committed_before = first.committed()
    assert committed_before >= 300, first.tail()

    # The zombie's open transaction is in the log but invisible read_committed.
    high = sum(watermarks(broker.bootstrap, out_topic, q, READ_UNCOMMITTED)[1] for q in PARTITIONS)
    lso = sum(watermarks(broker.bootstrap, out_topic, q, READ_COMMITTED)[1] for q in PARTITIONS)
    assert high > lso, f"the held transaction's records should be above the LSO (high {high}, LSO {lso})"

    # 2. Second worker, same transactional.id and group: its init_transactions
    #    aborts the zombie's transaction. The broker is killed (-9) and
    #    restarted while it works.
    second = Worker(tmp_path / "worker2.log", common + ["--batch", "50", "--pause", "0.03"] + WORKER_DEBUG)
    try:
        second.wait_for(lambda: second.committed() >= committed_before + 400, 30, "progress after the takeover")
        assert second.proc.poll() is None, "the worker finished before the broker restart: make it slower"
        broker.restart(hard=True)
        deadline = time.monotonic() + 120
        while second.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if second.proc.poll() is None:
            raise second.stuck("still running 120 s after the broker restart")
        assert second.proc.returncode == 0, f"second worker exited {second.proc.returncode}:\n{second.tail()}"
    finally:
        second.kill9()
    aborts = [line for line in second.lines() if line.startswith("aborted")]

    # 3. read_committed: each input exactly once, input order per partition.
    got = read_all(broker.bootstrap, out_topic, PARTITIONS, READ_COMMITTED, timeout_s=30)
    values = [r.value for q in PARTITIONS for r in got[q]]
    seen: dict[bytes, int] = {}
    for v in values:
        seen[v] = seen.get(v, 0) + 1
    duplicates = sorted(v for v, n in seen.items() if n > 1)
    missing = [i for i in range(RECORDS) if f"out:{i:05d}".encode() not in seen]
    assert not duplicates and not missing, (
        f"{len(values)} output records read_committed: {len(duplicates)} duplicated (e.g. {duplicates[:5]}), "
        f"{len(missing)} missing (e.g. {missing[:5]}); worker 2 aborts: {aborts[:5]}"
    )
    for q in PARTITIONS:
        numbers = [int(r.value[4:]) for r in got[q]]
        assert numbers == list(range(q, RECORDS, len(PARTITIONS))), f"output partition {q} out of input order"
        assert all(r.key == f"k{n}".encode() for r, n in zip(got[q], numbers))

    # The zombie's held records are in the log (read_uncommitted) but were aborted.
    everything = read_all(broker.bootstrap, out_topic, PARTITIONS, READ_UNCOMMITTED, timeout_s=30)
    assert sum(len(v) for v in everything.values()) > RECORDS, "the killed worker's open transaction left no records"

    # The group's offsets were committed inside the transactions: the input's ends.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = c.committed([TopicPartition(in_topic, q) for q in PARTITIONS], timeout=15)
    finally:
        c.close()
    ends = {q: watermarks(broker.bootstrap, in_topic, q, READ_UNCOMMITTED)[1] for q in PARTITIONS}
    assert {tp.partition: tp.offset for tp in committed} == ends
