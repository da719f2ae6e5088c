"""A 3-node odradek cluster driven by confluent-kafka (librdkafka 2.16):
formation, replica placement, acks=all round trips, failover after kill -9,
min.insync.replicas with two brokers down, controlled shutdown, group
offsets across a coordinator crash, and a restarted broker rejoining the ISR.

Every test gets a fresh cluster (conftest `cluster`: --dev, heartbeat
250 ms, session timeout 2 s, replica.lag.time.max.ms 3 s)."""

from __future__ import annotations

import threading
import time

import pytest
from cluster_helpers import (
    BackgroundProducer,
    assert_acked_records_stored,
    create_topic,
    produce_all,
    producer_config,
    value_of,
)
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from harness.cluster import ClusterError, NetnsNetwork, summarize
from harness.readback import read_partition

pytestmark = pytest.mark.needs_cluster

NODES = {1, 2, 3}
# broker.session.timeout.ms=2000: fencing after 2 s, then a new leader and a
# client metadata refresh. "Within a few seconds":
FAILOVER_BOUND_S = 8.0
# Controlled shutdown moves leadership before the process exits: the
# producer sees at most a short pause.
CONTROLLED_SHUTDOWN_GAP_S = 2.0
ISR_REJOIN_BOUND_S = 20.0


def test_cluster_forms_and_every_node_describes_it(cluster):
    mds = {n: cluster.metadata(None, node=n) for n in sorted(NODES)}
    for n, md in mds.items():
        assert set(md.brokers) == NODES, f"node {n} lists brokers {md.brokers}"
        for m in NODES:
            b = cluster.broker(m)
            assert md.brokers[m] == (b.host, b.port), f"node {n} advertises node {m} as {md.brokers[m]}"
        assert md.controller_id in NODES, f"node {n} names controller {md.controller_id}"
        assert md.cluster_id, f"node {n} has no cluster id"
    assert len({md.cluster_id for md in mds.values()}) == 1, {n: md.cluster_id for n, md in mds.items()}
    # every node ends up naming the same controller
    cluster.wait_until(
        lambda: len({cluster.controller_id(n) for n in NODES}) == 1, 10.0, "all nodes to agree on the controller"
    )

    controller, nodes = cluster.describe_cluster()
    assert set(nodes) == NODES
    assert controller in NODES

    # librdkafka's own view (Metadata through the client)
    md = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(timeout=10)
    assert set(md.brokers) == NODES
    assert md.controller_id in NODES


def test_rf3_topic_has_replicas_on_every_broker_and_full_isr(cluster, topic):
    create_topic(cluster, topic, partitions=6, rf=3)
    for n in sorted(NODES):
        parts = cluster.metadata([topic], node=n).topics[topic].partitions
        assert sorted(parts) == list(range(6))
        for p in parts.values():
            assert sorted(p.replicas) == [1, 2, 3], f"node {n}: {p}"
            assert sorted(p.isr) == [1, 2, 3], f"node {n}: {p}"
            assert p.leader in p.isr, f"node {n}: {p}"
    leaders = {p.leader for p in cluster.metadata([topic]).topics[topic].partitions.values()}
    assert leaders == NODES, f"6 partitions led by only {leaders}: leadership is not spread"

    # the same through librdkafka
    md = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic, timeout=10)
    for p in md.topics[topic].partitions.values():
        assert sorted(p.replicas) == [1, 2, 3] and sorted(p.isrs) == [1, 2, 3], p


def test_idempotent_acks_all_produce_then_consume_everything(cluster, topic):
    partitions = 3
    create_topic(cluster, topic, partitions=partitions, config={"min.insync.replicas": "2"})
    d = produce_all(cluster.bootstrap, topic, 3000, partitions)
    assert not d.failed, f"{len(d.failed)} failed, e.g. {list(d.failed.items())[:3]}"
    assert len(d.acked) == 3000
    logs = assert_acked_records_stored(cluster, topic, d, list(range(partitions)))
    for p in range(partitions):
        expected = [value_of(s) for s in range(3000) if s % partitions == p]
        assert logs[p] == expected, f"partition {p}: log differs from the produce order"


def test_kill9_of_leader_fails_over_to_isr_without_losing_acks(cluster, topic):
    create_topic(cluster, topic, partitions=1, config={"min.insync.replicas": "2"})
    before = cluster.partition(topic, 0)
    bg = BackgroundProducer(cluster.bootstrap, topic, 0, rate=200)
    bg.start()
    time.sleep(1.5)
    assert bg.deliveries.acked, "nothing acknowledged before the kill"
    t_kill = time.monotonic()
    cluster.kill(before.leader)
    survivor = next(n for n in NODES if n != before.leader)
    after = cluster.wait_new_leader(topic, 0, before.leader, timeout_s=FAILOVER_BOUND_S, node=survivor)
    t_leader = time.monotonic() - t_kill
    assert after.leader in before.isr, f"new leader {after.leader} was not in the ISR {before.isr}"
    assert after.leader_epoch > before.leader_epoch, (before, after)
    deadline = t_kill + FAILOVER_BOUND_S + 2
    while bg.deliveries.first_ack_after(t_kill + 0.05) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first = bg.deliveries.first_ack_after(t_kill + 0.05)
    assert first is not None, f"no record acknowledged within {FAILOVER_BOUND_S + 2}s of the kill (leader after {t_leader:.2f}s)"
    served_after = first - t_kill
    time.sleep(1.0)
    d = bg.stop()
    assert served_after <= FAILOVER_BOUND_S, f"new leader served {served_after:.2f}s after the kill"
    print(f"new leader {after.leader} in metadata after {t_leader:.2f}s, first ack after {served_after:.2f}s")
    assert not d.failed, f"{len(d.failed)} records failed, e.g. {list(d.failed.values())[:3]}"
    assert_acked_records_stored(cluster, topic, d, [0])


def test_min_insync_two_brokers_down_refuses_writes_then_recovers(cluster, topic):
    create_topic(cluster, topic, partitions=1, config={"min.insync.replicas": "2"})
    ok = produce_all(cluster.bootstrap, topic, 20, 1)
    assert len(ok.acked) == 20
    leader = cluster.leader_of(topic, 0)
    followers = sorted(NODES - {leader})
    for n in followers:
        cluster.kill(n)
    # every write while only the leader is alive must be refused, none acknowledged
    producer = Producer(
        producer_config(
            cluster.broker(leader).bootstrap,
            **{"enable.idempotence": False, "retries": 0, "message.timeout.ms": 8000, "request.timeout.ms": 3000},
        )
    )
    outcomes: dict[int, object] = {}
    for i in range(10):
        producer.produce(
            topic,
            value=f"refused-{i}".encode(),
            partition=0,
            on_delivery=lambda err, msg, i=i: outcomes.__setitem__(i, err if err else msg.offset()),
        )
        producer.poll(0.2)
    assert producer.flush(30) == 0
    acked = {i: o for i, o in outcomes.items() if not isinstance(o, KafkaError)}
    assert not acked, f"acks=all writes acknowledged with only one of 3 brokers alive (min.insync.replicas=2): {acked}"
    names = sorted({o.name() for o in outcomes.values()})
    print(f"errors while only the leader was alive: {names}")
    allowed = {
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "REQUEST_TIMED_OUT",
        "_MSG_TIMED_OUT",
        "_TIMED_OUT",
    }
    assert set(names) <= allowed, f"unexpected errors {names}"

    for n in followers:
        cluster.start(n)
    # writes succeed again once the followers are back
    d = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        d = produce_all(cluster.bootstrap, topic, 5, 1, start_seq=1000, **{"message.timeout.ms": 10000})
        if len(d.acked) == 5:
            break
    assert d is not None and len(d.acked) == 5, f"writes still fail 30 s after the restart: {list(d.failed.values())[:3]}"
    log = [r.value for r in read_partition(cluster.bootstrap, topic, 0)]
    for seq, (_, off, _) in {**ok.acked, **d.acked}.items():
        assert log[off] == value_of(seq), f"acknowledged record {seq} not at offset {off}"


def test_sigterm_of_leader_moves_leadership_before_exit(cluster, topic):
    create_topic(cluster, topic, partitions=3)
    leader = cluster.leader_of(topic, 0)
    led = [p for p in range(3) if cluster.leader_of(topic, p) == leader]
    other = next(n for n in NODES if n != leader)
    bg = BackgroundProducer(cluster.bootstrap, topic, 0, rate=200)
    bg.start()
    time.sleep(1.5)

    exit_code: dict = {}
    t_term = time.monotonic()
    stopper = threading.Thread(target=lambda: exit_code.setdefault("code", cluster.stop(leader, timeout_s=30)))
    stopper.start()
    stopper.join(35)
    t_exit = time.monotonic()
    assert exit_code.get("code") == 0, f"exit code after SIGTERM: {exit_code}"
    # right after the exit (well inside the 2 s session timeout) the
    # partitions it led already have other leaders: it handed them over
    md = cluster.metadata([topic], node=other)
    still = [p for p in led if md.partition(topic, p).leader == leader]
    assert not still, (
        f"partitions {still} still name node {leader} as leader right after it exited "
        f"({t_exit - t_term:.2f}s after SIGTERM): no controlled shutdown"
    )
    time.sleep(1.5)
    d = bg.stop()
    gap, at = d.longest_gap(t_term - 0.5, t_exit + 1.0)
    print(f"SIGTERM to exit {t_exit - t_term:.2f}s; longest gap without an ack {gap:.2f}s at +{at - t_term:.2f}s")
    assert gap <= CONTROLLED_SHUTDOWN_GAP_S, f"producing paused {gap:.2f}s during the controlled shutdown"
    assert not d.failed, f"{len(d.failed)} records failed, e.g. {list(d.failed.values())[:3]}"
    assert_acked_records_stored(cluster, topic, d, [0])


def test_group_offsets_survive_coordinator_kill(cluster, topic):
    create_topic(cluster, topic, partitions=2)
    produce_all(cluster.bootstrap, topic, 100, 2)
    group = f"g-{topic}"
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 30
    while got < 60 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got += 1
    assert got == 60, f"consumed {got} of 60 within 30 s"
    committed = consumer.commit(asynchronous=False)
    want = {(tp.partition, tp.offset) for tp in committed}
    consumer.close()

    offsets_md = cluster.metadata(["__consumer_offsets"]).topics["__consumer_offsets"]
    assert offsets_md.error_code == 0 and offsets_md.partitions, offsets_md
    for p in offsets_md.partitions.values():
        assert len(p.replicas) == 3, f"__consumer_offsets partition {p.partition} has replicas {p.replicas}"

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    desc = admin.describe_consumer_groups([group])[group].result(10)
    coordinator = desc.coordinator.id
    cluster.kill(coordinator)
    survivors = sorted(NODES - {coordinator})

    fresh = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_of(survivors),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(2)]
        seen = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                seen = {(tp.partition, tp.offset) for tp in fresh.committed(tps, timeout=5)}
                if seen == want:
                    break
            except Exception as e:  # noqa: BLE001 - coordinator moving: retry until the deadline
                seen = e
            time.sleep(0.3)
        assert seen == want, f"committed offsets after the coordinator's kill: {seen}, expected {want}"
        survivors_admin = AdminClient({"bootstrap.servers": cluster.bootstrap_of(survivors)})

        def new_coordinator():
            try:
                d = survivors_admin.describe_consumer_groups([group], request_timeout=5)[group].result(6)
            except Exception as e:  # noqa: BLE001 - the group moving: retry until the deadline
                return None if "timed out" in str(e).lower() or isinstance(e, TimeoutError) else e
            return d.coordinator.id

        coord = cluster.wait_until(new_coordinator, 30.0, "DescribeGroups to answer after the coordinator's kill")
        assert coord in survivors, f"DescribeGroups names coordinator {coord!r} (killed: {coordinator})"
        # and consumption resumes exactly there: the other 40 records
        fresh.subscribe([topic])
        rest = []
        deadline = time.monotonic() + 30
        while len(rest) < 40 and time.monotonic() < deadline:
            msg = fresh.poll(0.5)
            if msg is not None and not msg.error():
                rest.append((msg.partition(), msg.offset()))
        assert len(rest) == 40, f"after the failover the group read {len(rest)} of the remaining 40 records"
        start = {p: min(o for q, o in rest if q == p) for p in {q for q, _ in rest}}
        assert all(start[p] == dict(want)[p] for p in start), f"resumed at {start}, committed {want}"
    finally:
        fresh.close()


def test_killed_broker_restarts_and_rejoins_isr(cluster, topic):
    partitions = 3
    create_topic(cluster, topic, partitions=partitions)
    victim = 3
    cluster.kill(victim)
    d = produce_all(cluster.bootstrap_of([1, 2]), topic, 600, partitions)
    assert len(d.acked) == 600, f"{len(d.failed)} failed with one broker down: {list(d.failed.values())[:3]}"
    cluster.wait_partitions(
        topic,
        lambda ps: all(victim not in p.isr for p in ps.values()),
        15.0,
        f"node {victim} to leave every ISR",
        node=1,
    )
    t = time.monotonic()
    cluster.start(victim)
    for n in sorted(NODES):
        cluster.wait_isr(topic, 3, timeout_s=ISR_REJOIN_BOUND_S, node=n)
    print(f"node {victim} back in every ISR {time.monotonic() - t:.2f}s after its restart")
    assert_acked_records_stored(cluster, topic, d, list(range(partitions)))


@pytest.mark.parametrize("fault", ["sigstop", "isolate"])
def test_controller_pause_leaves_the_other_brokers_serving(cluster_factory, topic, fault):
    """SIGSTOP or network isolation of the controller (a voter and a broker):
    the other two elect a new controller, keep their sessions, and serve every
    partition (leaders among themselves) while it is away."""
    if fault == "isolate":
        ok, why = NetnsNetwork.available()
        if not ok:
            pytest.skip(f"network isolation needs network namespaces: {why}")
        cluster = cluster_factory(network="netns")
    else:
        cluster = cluster_factory()
    away, back = (cluster.pause, cluster.resume) if fault == "sigstop" else (cluster.isolate, cluster.heal)
    create_topic(cluster, topic, partitions=3, config={"min.insync.replicas": "2"})
    controller = cluster.controller_id()
    others = sorted(NODES - {controller})
    led_by_other = next(p for p in range(3) if cluster.leader_of(topic, p) != controller)
    bg = BackgroundProducer(cluster.bootstrap, topic, led_by_other, rate=100)
    bg.start()
    time.sleep(1.0)
    t_pause = time.monotonic()
    away(controller)
    seen: list[str] = []

    def serving():
        m = cluster.metadata([topic], node=others[0])
        seen[:] = [f"node {others[0]} sees brokers {sorted(m.brokers)}, controller {m.controller_id}: "
                   f"{summarize(m.topics.get(topic))}"]
        ok = (
            set(others) <= set(m.brokers)
            and m.controller_id in others
            and all(p.leader in others for p in m.topics[topic].partitions.values())
        )
        return m if ok else None

    try:
        try:
            md = cluster.wait_until(serving, FAILOVER_BOUND_S + 4, "the live nodes to serve every partition")
        except ClusterError as e:
            raise AssertionError(
                f"controller {controller} away ({fault}): nodes {others} do not serve every partition within "
                f"{FAILOVER_BOUND_S + 4:.0f}s; last metadata: {seen[0] if seen else None}"
            ) from e
        served = time.monotonic() - t_pause
        time.sleep(2.0)
        still = cluster.metadata([topic], node=others[1])
        assert set(others) <= set(still.brokers), f"live brokers fenced: node {others[1]} lists {sorted(still.brokers)}"
        assert all(p.leader in others for p in still.topics[topic].partitions.values()), still.topics[topic]
    finally:
        back(controller)
    d = bg.stop()
    gap, at = d.longest_gap(t_pause, t_pause + served + 2.0)
    print(f"new controller {md.controller_id}, every partition served {served:.2f}s after the pause; "
          f"longest ack gap {gap:.2f}s")
    assert gap <= FAILOVER_BOUND_S, f"partition {led_by_other} (not led by the controller) had no ack for {gap:.2f}s"
    assert_acked_records_stored(cluster, topic, d, [led_by_other])
