"""Cluster administration with real clients against a 3-node odradek cluster:
ElectLeaders (confluent-kafka), DescribeLogDirs (kafka-python), partition
reassignment (kafkajs: AlterPartitionReassignments, ListPartitionReassignments)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka import TopicPartition as CkTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka import ElectionType

from harness import wire
from harness.readback import read_partition

RUNNER = Path(__file__).resolve().parents[1] / "kafkajs" / "runner.js"


def kafkajs(bootstrap: str, command: str, **args):
    proc = subprocess.run(["node", str(RUNNER), bootstrap, command, json.dumps(args)], capture_output=True, text=True, timeout=90)
    if proc.returncode != 0:
        pytest.fail(f"kafkajs {command} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    return json.loads(proc.stdout)


ALTER_PARTITION_REASSIGNMENTS = 45


def cancel_reassignment(broker, topic: str, partition: int) -> int:
    """AlterPartitionReassignments v0 with a null replica list; returns the partition's error code."""
    body = (
        wire.int32(30000)
        + wire.uvarint(2) + wire.compact_string(topic)  # one topic
        + wire.uvarint(2) + wire.int32(partition) + wire.uvarint(0) + wire.EMPTY_TAGGED_FIELDS  # replicas: null
        + wire.EMPTY_TAGGED_FIELDS
        + wire.EMPTY_TAGGED_FIELDS
    )
    with wire.Connection(broker.host, broker.port) as conn:
        cid = conn.next_correlation_id()
        conn.send(wire.frame(wire.request_header(ALTER_PARTITION_REASSIGNMENTS, 0, cid, flexible=True) + body))
        r = wire.Reader(conn.recv_response(cid, flexible_header=True))
    r.int32()  # throttle
    assert r.int16() == 0  # top-level error
    _skip_compact_string(r)  # error message
    assert wire._read_uvarint(r) == 2  # one topic
    _skip_compact_string(r)
    assert wire._read_uvarint(r) == 2  # one partition
    assert r.int32() == partition
    return r.int16()


def _skip_compact_string(r) -> None:
    length = wire._read_uvarint(r)
    if length > 1:
        r._take(length - 1)


def create(cluster, topic: str, partitions: int = 1, replicas: dict[int, list[int]] | None = None, rf: int = 3):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    if replicas:
        new = NewTopic(topic, num_partitions=len(replicas), replica_assignment=[replicas[p] for p in sorted(replicas)])
    else:
        new = NewTopic(topic, num_partitions=partitions, replication_factor=rf)
    admin.create_topics([new])[topic].result(timeout=30)
    cluster.wait_isr(topic, size=len(replicas[0]) if replicas else rf)


def produce(cluster, topic: str, count: int, partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(count):
        producer.produce(topic, value=b"v%d" % i, partition=partition)
    assert producer.flush(60) == 0


def test_preferred_leader_election_moves_leadership_back(cluster, topic):
    create(cluster, topic, replicas={0: [1, 2, 3]})
    assert cluster.leader_of(topic) == 1
    cluster.kill(1)
    cluster.wait_until(lambda: cluster.leader_of(topic, node=2) in (2, 3), 30, "a new leader after node 1 died")
    cluster.start(1)
    cluster.wait_isr(topic, size=3, timeout_s=60, node=2)
    assert cluster.leader_of(topic, node=2) != 1, "leadership came back without an election"

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    futures = admin.elect_leaders(ElectionType.PREFERRED, [CkTopicPartition(topic, 0)])
    results = futures.result(timeout=30)
    assert results[CkTopicPartition(topic, 0)] is None, results
    cluster.wait_until(lambda: cluster.leader_of(topic, node=2) == 1, 15, "the preferred replica leading again")
    # A second election is not needed any more.
    again = admin.elect_leaders(ElectionType.PREFERRED, [CkTopicPartition(topic, 0)]).result(timeout=30)
    error = again[CkTopicPartition(topic, 0)]
    assert error is not None and "ELECTION_NOT_NEEDED" in error.name(), again


def test_describe_log_dirs_reports_hosted_partitions_and_sizes(cluster, topic):
    from kafka.admin import KafkaAdminClient

    create(cluster, topic, partitions=2)
    produce(cluster, topic, 100, partition=0)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=20000)
    try:
        answer = admin.describe_log_dirs()
    finally:
        admin.close()
    # One answer per queried broker with one data directory holding both partitions (RF=3: every broker).
    text = repr(answer)
    assert topic in text, text[:2000]
    results = answer.results if hasattr(answer, "results") else answer.log_dirs
    sizes = {}
    for result in results:
        error_code, log_dir, topics = result[0], result[1], result[2]
        assert error_code == 0 and log_dir
        for t in topics:
            if t[0] == topic:
                for p in t[1]:
                    sizes[p[0]] = p[1]
    assert sorted(sizes) == [0, 1], sizes
    assert sizes[0] > 100 * 2, sizes
    assert sizes[1] == 0, sizes


def test_reassignment_moves_a_partition_to_new_replicas(cluster, topic):
    create(cluster, topic, replicas={0: [1, 2]})
    produce(cluster, topic, 500)
    kafkajs(cluster.bootstrap, "reassign", topic=topic, partition=0, replicas=[3, 2])

    def done():
        p = cluster.partition(topic, 0)
        return p is not None and sorted(p.replicas) == [2, 3] and sorted(p.isr) == [2, 3]

    cluster.wait_until(done, 60, "the reassignment to [3, 2] to complete")
    listed = kafkajs(cluster.bootstrap, "list-reassignments", topic=topic, partitions=[0])
    assert all(not t.get("partitions") for t in listed.get("topics", [])), listed
    # Node 1 no longer holds the partition; node 3 has every record.
    partition_dir = cluster.base_dir / "node-1" / "data" / f"{topic}-0"
    cluster.wait_until(lambda: not partition_dir.exists(), 30, "node 1 to remove its copy")
    assert len(read_partition(cluster.bootstrap, topic, 0)) == 500
    produce(cluster, topic, 10)
    assert len(read_partition(cluster.bootstrap, topic, 0)) == 510


def test_an_ongoing_reassignment_is_listed_and_can_be_cancelled(cluster, topic):
    create(cluster, topic, replicas={0: [1, 2]})
    produce(cluster, topic, 50)
    # Node 3 is down, so it cannot catch up: the reassignment stays in progress.
    cluster.kill(3)
    cluster.wait_until(lambda: 3 not in cluster.metadata(node=1).brokers, 30, "node 3 fenced")
    kafkajs(cluster.bootstrap_of([1, 2]), "reassign", topic=topic, partition=0, replicas=[3, 2])
    listed = kafkajs(cluster.bootstrap_of([1, 2]), "list-reassignments", topic=topic, partitions=[0])
    [entry] = [p for t in listed["topics"] if t["name"] == topic for p in t["partitions"]]
    assert entry["addingReplicas"] == [3] and entry["removingReplicas"] == [1], entry
    # kafkajs cannot send a null replica list (the cancel), so this request is built by hand.
    assert cancel_reassignment(cluster.broker(1), topic, 0) == 0
    p = cluster.partition(topic, 0, node=1)
    assert sorted(p.replicas) == [1, 2], p
    listed = kafkajs(cluster.bootstrap_of([1, 2]), "list-reassignments", topic=topic, partitions=[0])
    assert all(not t.get("partitions") for t in listed.get("topics", [])), listed
