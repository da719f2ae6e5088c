"""Consumer-group details with librdkafka: cooperative-sticky (incremental) and eager rebalancing, OffsetDelete,
ListGroups state filters, LeaveGroup, static-membership fencing, DescribeGroups fields, kcat -G roundrobin.

Every test checks exact outcomes (which member owns which partition, which offsets are committed) and is bounded
in time: the group broker has no initial rebalance delay and a 1 s minimum session timeout (conftest.FAST)."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from conftest import create_topic, group_consumer, produce
from harness import wire

STEP_S = 15  # upper bound for one rebalance or one read-all step


def consumer(broker, group: str, **extra) -> Consumer:
    # Faster heartbeats than the shared default: these tests time rebalances tightly.
    return group_consumer(broker, group, **{"heartbeat.interval.ms": 300, **extra})


def parts(c: Consumer) -> set[int]:
    return {tp.partition for tp in c.assignment()}


class Member:
    """A subscribed consumer that records its rebalance callbacks and what it consumed. Commits synchronously
    in on_revoke (and so on close), so a partition that moves is picked up exactly where it was left."""

    def __init__(self, broker, group: str, topic: str, name: str, **extra):
        self.name = name
        self.events: list[tuple[str, frozenset[int]]] = []
        self.consumed: list[tuple[int, int, bytes]] = []
        self.errors: list[KafkaError] = []
        self.c = consumer(broker, group, **{"client.id": name, **extra})
        self.c.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, c, tps):
        self.events.append(("assign", frozenset(tp.partition for tp in tps)))

    def _on_revoke(self, c, tps):
        self.events.append(("revoke", frozenset(tp.partition for tp in tps)))
        try:
            c.commit(asynchronous=False)
        except Exception as e:  # nothing consumed since the last commit
            assert "NO_OFFSET" in str(e), e

    def poll(self) -> None:
        msg = self.c.poll(0.05)
        if msg is None:
            return
        if msg.error():
            self.errors.append(msg.error())
        else:
            self.consumed.append((msg.partition(), msg.offset(), msg.value()))

    def close(self) -> None:
        self.c.close()


def pump(members: list[Member], until, timeout_s: float = STEP_S, what: str = "") -> float:
    """Poll every member until until() holds; returns the seconds it took."""
    started = time.monotonic()
    while not until():
        if time.monotonic() - started > timeout_s:
            state = {m.name: (sorted(parts(m.c)), m.events) for m in members}
            raise AssertionError(f"not reached within {timeout_s}s: {what}; members: {state}")
        for m in members:
            m.poll()
    return time.monotonic() - started


def nonempty(events, since: int = 0):
    return [(kind, set(p)) for kind, p in events[since:] if p]


def committed(broker, group: str, topic: str, partitions: int) -> dict[int, int]:
    checker = consumer(broker, group)
    try:
        return {tp.partition: tp.offset for tp in checker.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10)}
    finally:
        checker.close()


# ----------------------------------------------------------------------------------------------------------------
# Rebalancing: 2 then 3 members on 6 partitions
# ----------------------------------------------------------------------------------------------------------------
EAGER_SPLITS = {
    # The sets of partitions each member gets on one 6-partition topic (members ordered by member id).
    "range": ({frozenset({0, 1, 2}), frozenset({3, 4, 5})}, {frozenset({0, 1}), frozenset({2, 3}), frozenset({4, 5})}),
    "roundrobin": ({frozenset({0, 2, 4}), frozenset({1, 3, 5})}, {frozenset({0, 3}), frozenset({1, 4}), frozenset({2, 5})}),
}


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range", "roundrobin"])
def test_rebalance_two_then_three_members(gbroker, topic, strategy):
    create_topic(gbroker, topic, 6)
    group = f"{strategy}-{topic}"
    produce(gbroker, topic, [f"a{i}".encode() for i in range(300)], partitions=6)
    opts = {"partition.assignment.strategy": strategy}
    a = Member(gbroker, group, topic, "a", **opts)
    b = Member(gbroker, group, topic, "b", **opts)
    members = [a, b]
    pump(members, lambda: len(parts(a.c)) == 3 and len(parts(b.c)) == 3, what="3+3")
    pump(members, lambda: len(a.consumed) + len(b.consumed) >= 300, what="first 300 records")
    a_before, b_before = parts(a.c), parts(b.c)
    assert a_before | b_before == set(range(6))
    if strategy in EAGER_SPLITS:
        assert {frozenset(a_before), frozenset(b_before)} == EAGER_SPLITS[strategy][0]
    a_mark, b_mark = len(a.events), len(b.events)

    c = Member(gbroker, group, topic, "c", **opts)
    members.append(c)
    pump(members, lambda: [len(parts(m.c)) for m in members] == [2, 2, 2], what="2+2+2")
    # Let the callbacks of the last rebalance run before looking at them.
    for _ in range(5):
        for m in members:
            m.poll()
    final = {m.name: parts(m.c) for m in members}
    assert sorted(p for s in final.values() for p in s) == list(range(6)), final
    if strategy == "cooperative-sticky":
        # Incremental: a and b each give up exactly one partition and keep the rest; nothing is re-assigned
        # to them; c is given just the two that moved.
        for m, before, mark in ((a, a_before, a_mark), (b, b_before, b_mark)):
            ev = nonempty(m.events, mark)
            assert len(ev) == 1 and ev[0][0] == "revoke" and len(ev[0][1]) == 1, (m.name, m.events)
            assert final[m.name] == before - ev[0][1]
        assert nonempty(c.events) == [("assign", final["c"])], c.events
        assert final["c"] == (a_before - final["a"]) | (b_before - final["b"])
    else:
        # Eager: a and b revoke everything they had, then are assigned their new sets.
        for m, before, mark in ((a, a_before, a_mark), (b, b_before, b_mark)):
            assert nonempty(m.events, mark) == [("revoke", before), ("assign", final[m.name])], (m.name, m.events)
        assert nonempty(c.events) == [("assign", final["c"])]
        assert {frozenset(s) for s in final.values()} == EAGER_SPLITS[strategy][1]

    produce(gbroker, topic, [f"b{i}".encode() for i in range(300)], partitions=6)
    total = lambda: len({(p, o) for m in members for p, o, _ in m.consumed})  # noqa: E731
    pump(members, lambda: total() >= 600, what="all 600 records")
    for m in members:
        m.poll()
    for m in members:
        m.close()
    # Commits in on_revoke hand every moved partition over where it was left: each record exactly once.
    seen = sorted((p, o) for m in members for p, o, _ in m.consumed)
    assert seen == sorted((p, o) for p in range(6) for o in range(100))
    assert sorted(v for m in members for _, _, v in m.consumed) == sorted(
        [f"a{i}".encode() for i in range(300)] + [f"b{i}".encode() for i in range(300)])
    # After the second phase each partition was read by its final owner only.
    for m in members:
        assert {p for p, o, _ in m.consumed if o >= 50} <= final[m.name], (m.name, final)
    assert committed(gbroker, group, topic, 6) == {p: 100 for p in range(6)}


# ----------------------------------------------------------------------------------------------------------------
# OffsetDelete (raw: confluent-kafka 2.16.1, kafka-python 2.3.3, aiokafka and kafkajs 2.2.4 have no client for it)
# ----------------------------------------------------------------------------------------------------------------
OFFSET_DELETE = 47
GROUP_ID_NOT_FOUND = 69
GROUP_SUBSCRIBED_TO_TOPIC = 86


def offset_delete(broker, group: str, topics: dict[str, list[int]]) -> tuple[int, dict[tuple[str, int], int]]:
    """OffsetDelete v0 to the (only) broker, the coordinator: (top-level error, {(topic, partition): error})."""
    body = wire.string(group) + wire.array(
        [wire.string(t) + wire.array([wire.int32(p) for p in ps]) for t, ps in topics.items()])
    with wire.Connection(broker.host, broker.port) as conn:
        cid = conn.next_correlation_id()
        conn.send(wire.frame(wire.request_header(OFFSET_DELETE, 0, cid) + body))
        r = wire.Reader(conn.recv_response(cid))
    error = r.int16()
    r.int32()  # throttle_time_ms
    out = {}
    for _ in range(r.int32()):
        name = r.string()
        for _ in range(r.int32()):
            index = r.int32()
            out[(name, index)] = r.int16()
    return error, out


def listed_offsets(admin, group: str, tps: list[TopicPartition]) -> dict[tuple[str, int], int]:
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])[group].result(10)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}


def test_offset_delete(gbroker, topic):
    other = f"{topic}-other"
    create_topic(gbroker, topic, 2)
    create_topic(gbroker, other, 1)
    produce(gbroker, topic, [b"x"] * 10, partitions=2)
    produce(gbroker, other, [b"y"] * 3)
    group = f"offdel-{topic}"
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1), TopicPartition(other, 0)]

    # A member subscribed to `topic` commits offsets for both topics (other's by hand).
    m = Member(gbroker, group, topic, "m")
    pump([m], lambda: len(m.consumed) == 10, what="10 records")
    m.c.commit(asynchronous=False)
    m.c.commit(offsets=[TopicPartition(other, 0, 3)], asynchronous=False)
    assert listed_offsets(admin, group, tps) == {(topic, 0): 5, (topic, 1): 5, (other, 0): 3}
    # While the member is subscribed to `topic`, its offsets cannot be deleted; `other`'s can.
    error, per_partition = offset_delete(gbroker, group, {topic: [0, 1], other: [0]})
    assert error == 0
    assert per_partition == {(topic, 0): GROUP_SUBSCRIBED_TO_TOPIC, (topic, 1): GROUP_SUBSCRIBED_TO_TOPIC, (other, 0): 0}
    assert listed_offsets(admin, group, tps) == {(topic, 0): 5, (topic, 1): 5, (other, 0): -1001}

    # Once the group is empty they can.
    m.close()
    assert offset_delete(gbroker, group, {topic: [0, 1]}) == (0, {(topic, 0): 0, (topic, 1): 0})
    assert listed_offsets(admin, group, tps) == {(topic, 0): -1001, (topic, 1): -1001, (other, 0): -1001}
    # A consumer of the group starts over from auto.offset.reset.
    again = Member(gbroker, group, topic, "again")
    pump([again], lambda: len(again.consumed) == 10, what="re-read from earliest")
    again.close()
    # A group that does not exist.
    assert offset_delete(gbroker, f"none-{topic}", {topic: [0]})[0] == GROUP_ID_NOT_FOUND


# ----------------------------------------------------------------------------------------------------------------
# ListGroups with a state filter
# ----------------------------------------------------------------------------------------------------------------
def test_list_groups_state_filter(gbroker, topic):
    create_topic(gbroker, topic, 1)
    produce(gbroker, topic, [b"x"])
    stable, empty = f"stable-{topic}", f"empty-{topic}"
    e = Member(gbroker, empty, topic, "e")
    pump([e], lambda: len(e.consumed) == 1, what="empty group's member reads")
    e.c.commit(asynchronous=False)
    e.close()
    s = Member(gbroker, stable, topic, "s")
    pump([s], lambda: len(s.consumed) == 1, what="stable group's member reads")
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})

    def listed(states=None):
        kwargs = {"states": states} if states is not None else {}
        result = admin.list_consumer_groups(**kwargs).result(10)
        assert result.errors == []
        return {g.group_id: g.state for g in result.valid if g.group_id in (stable, empty)}

    try:
        assert listed({ConsumerGroupState.STABLE}) == {stable: ConsumerGroupState.STABLE}
        assert listed({ConsumerGroupState.EMPTY}) == {empty: ConsumerGroupState.EMPTY}
        assert listed({ConsumerGroupState.STABLE, ConsumerGroupState.EMPTY}) == {
            stable: ConsumerGroupState.STABLE, empty: ConsumerGroupState.EMPTY}
        assert listed({ConsumerGroupState.PREPARING_REBALANCING}) == {}
        assert listed() == {stable: ConsumerGroupState.STABLE, empty: ConsumerGroupState.EMPTY}
    finally:
        s.close()


# ----------------------------------------------------------------------------------------------------------------
# LeaveGroup
# ----------------------------------------------------------------------------------------------------------------
def test_leave_group_on_close_is_prompt(gbroker, topic):
    create_topic(gbroker, topic, 2)
    group = f"leave-{topic}"
    session_ms = 10000
    a = Member(gbroker, group, topic, "a", **{"session.timeout.ms": session_ms})
    b = Member(gbroker, group, topic, "b", **{"session.timeout.ms": session_ms})
    pump([a, b], lambda: len(parts(a.c)) == 1 and len(parts(b.c)) == 1, what="1+1")
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    before = admin.describe_consumer_groups([group])[group].result(10)
    assert sorted(m.member_id for m in before.members) == sorted([a.c.memberid(), b.c.memberid()])
    b.close()  # sends LeaveGroup
    took = pump([a], lambda: parts(a.c) == {0, 1}, timeout_s=session_ms / 1000, what="a takes both partitions")
    assert took < 3, f"a got b's partition {took:.1f}s after b closed (session timeout {session_ms / 1000}s)"
    after = admin.describe_consumer_groups([group])[group].result(10)
    assert [m.member_id for m in after.members] == [a.c.memberid()]
    assert after.state == ConsumerGroupState.STABLE
    a.close()
    gone = admin.describe_consumer_groups([group])[group].result(10)
    assert gone.members == [] and gone.state == ConsumerGroupState.EMPTY


# ----------------------------------------------------------------------------------------------------------------
# Static membership: a second member with the same group.instance.id fences the first
# ----------------------------------------------------------------------------------------------------------------
def test_static_member_fenced_by_same_instance_id(gbroker, topic):
    create_topic(gbroker, topic, 2)
    group = f"fence-{topic}"
    first = Member(gbroker, group, topic, "first", **{"group.instance.id": "same", "session.timeout.ms": 10000})
    pump([first], lambda: parts(first.c) == {0, 1}, what="first assigned")
    first_id = first.c.memberid()
    second = Member(gbroker, group, topic, "second", **{"group.instance.id": "same", "session.timeout.ms": 10000})
    # The second takes over the instance (same partitions, no rebalance); the first's next heartbeat is fenced.
    # librdkafka raises it as a fatal consumer error, returned by poll() (not passed to error_cb).
    pump([first, second], lambda: parts(second.c) == {0, 1} and first.errors, what="second assigned, first fenced")
    # The error's code is _FATAL itself (its fatal() flag is False: the flag marks the underlying error).
    assert [e.code() for e in first.errors] == [KafkaError._FATAL], first.errors
    assert "Static consumer fenced by other consumer with same group.instance.id" in first.errors[0].str()
    assert parts(first.c) == set()  # its assignment is lost
    assert nonempty(second.events) == [("assign", {0, 1})] and second.errors == []
    assert second.c.memberid() != first_id
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(10)
    # The new member id, but the client id of the member it replaced: Kafka's replaceStaticMember keeps the old
    # member's clientId and clientHost too.
    assert [(m.member_id, m.group_instance_id, m.client_id) for m in described.members] == [
        (second.c.memberid(), "same", "first")]
    first.close()
    second.close()


# ----------------------------------------------------------------------------------------------------------------
# DescribeGroups fields
# ----------------------------------------------------------------------------------------------------------------
def test_describe_groups_details(gbroker, topic):
    create_topic(gbroker, topic, 4)
    group = f"describe-{topic}"
    opts = {"partition.assignment.strategy": "roundrobin"}
    a = Member(gbroker, group, topic, "client-a", **opts)
    b = Member(gbroker, group, topic, "client-b", **opts)
    pump([a, b], lambda: len(parts(a.c)) == 2 and len(parts(b.c)) == 2, what="2+2")
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    d = admin.describe_consumer_groups([group])[group].result(10)
    try:
        assert d.group_id == group
        assert d.state == ConsumerGroupState.STABLE
        assert d.is_simple_consumer_group is False  # protocol type "consumer"
        assert d.partition_assignor == "roundrobin"
        assert str(d.type).endswith("CLASSIC"), d.type
        assert d.coordinator.port == gbroker.port
        got = {m.client_id: (m.member_id, m.host, m.group_instance_id,
                             sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions))
               for m in d.members}
        assert got == {
            "client-a": (a.c.memberid(), "/127.0.0.1", None, sorted((topic, p) for p in parts(a.c))),
            "client-b": (b.c.memberid(), "/127.0.0.1", None, sorted((topic, p) for p in parts(b.c))),
        }
        assert {frozenset(parts(a.c)), frozenset(parts(b.c))} == {frozenset({0, 2}), frozenset({1, 3})}
    finally:
        a.close()
        b.close()
    d = admin.describe_consumer_groups([group])[group].result(10)
    assert d.state == ConsumerGroupState.EMPTY and d.members == [] and d.partition_assignor == ""


# ----------------------------------------------------------------------------------------------------------------
# kcat -G with roundrobin
# ----------------------------------------------------------------------------------------------------------------
def test_kcat_roundrobin_two_members(gbroker, topic):
    create_topic(gbroker, topic, 6)
    group = f"kcat-rr-{topic}"
    procs = [
        subprocess.Popen(
            ["kcat", "-b", gbroker.bootstrap, "-G", group, "-X", "auto.offset.reset=earliest",
             "-X", "partition.assignment.strategy=roundrobin", "-X", "session.timeout.ms=6000",
             "-X", "heartbeat.interval.ms=300", "-X", "enable.auto.commit=true", "-X", "auto.commit.interval.ms=100",
             "-f", "%p %o %s\\n", "-u", topic],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    out: list[list[str]] = [[], []]
    err: list[list[str]] = [[], []]
    readers = [threading.Thread(target=lambda f=f, sink=sink: sink.extend(iter(f.readline, "")), daemon=True)
               for i, p in enumerate(procs) for f, sink in ((p.stdout, out[i]), (p.stderr, err[i]))]
    for t in readers:
        t.start()

    def last_assigned(i):
        lines = [l for l in err[i] if "assigned:" in l]
        if not lines:
            return None
        return frozenset(int(tok.strip("[],")) for tok in lines[-1].split("assigned:")[1].split() if tok.startswith("["))

    try:
        deadline = time.monotonic() + STEP_S
        while {last_assigned(0), last_assigned(1)} != {frozenset({0, 2, 4}), frozenset({1, 3, 5})}:
            assert time.monotonic() < deadline, (err[0][-5:], err[1][-5:])
            time.sleep(0.1)
        produce(gbroker, topic, [f"v{i}".encode() for i in range(600)], partitions=6)
        deadline = time.monotonic() + STEP_S
        while len(out[0]) + len(out[1]) < 600 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # anything read twice would show up now
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(20)
        for t in readers:
            t.join(5)
    records = [[tuple(line.split(" ", 2)) for line in lines if line.strip()] for lines in out]
    # Exactly once overall, each member reading only its roundrobin share.
    assert sorted(v.strip() for r in records for _, _, v in r) == sorted(f"v{i}" for i in range(600))
    for i in range(2):
        assert {int(p) for p, _, _ in records[i]} == last_assigned(i)
    assert len(records[0]) == len(records[1]) == 300
    assert committed(gbroker, group, topic, 6) == {p: 100 for p in range(6)}


def test_offset_delete_librdkafka_admin(gbroker, topic):
    """The same through librdkafka's own admin call (rd_kafka_DeleteConsumerGroupOffsets, via ctypes)."""
    from rdkafka_offset_delete import delete_consumer_group_offsets

    create_topic(gbroker, topic, 2)
    group = f"offdel-rdk-{topic}"
    m = Member(gbroker, group, topic, "m")
    m.c.commit(offsets=[TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)], asynchronous=False)
    pump([m], lambda: parts(m.c) == {0, 1}, what="assigned")
    assert delete_consumer_group_offsets(gbroker.bootstrap, group, [(topic, 0)]) == (
        0, {(topic, 0): GROUP_SUBSCRIBED_TO_TOPIC})
    m.close()
    assert delete_consumer_group_offsets(gbroker.bootstrap, group, [(topic, 0), (topic, 1)]) == (
        0, {(topic, 0): 0, (topic, 1): 0})
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    assert listed_offsets(admin, group, [TopicPartition(topic, p) for p in range(2)]) == {
        (topic, 0): -1001, (topic, 1): -1001}
    assert delete_consumer_group_offsets(gbroker.bootstrap, f"none-{topic}", [(topic, 0)])[0] == GROUP_ID_NOT_FOUND
