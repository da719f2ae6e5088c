#!/usr/bin/env python3
"""odradek benchmark, driven by librdkafka. Run it through scripts/bench,
which provides the Python environment and builds the client.

The client (--client) is librdkafka's own C benchmark tool,
examples/rdkafka_performance.c, which scripts/bench fetches (rdkafka-sys crate
on crates.io) and builds under target/bench-tools/ and passes in
$RDKAFKA_PERFORMANCE; it costs far less CPU per record than a binding, which
matters on a small machine where client and broker share the cores. With
--client python (or when that build failed) the same runs are driven by
confluent-kafka from Python instead. Topics are created with confluent-kafka's
AdminClient either way.

Measures, in this order:
  1. loopback-to-file rate of this machine: bytes read from a loopback TCP
     socket and written to a file on the data dir's filesystem, fsync at the
     end. The bar that produce throughput is compared with; measured before
     and again after steps 2-6, median reported.
  2. start-to-ready: process start until the first ApiVersions answer, over a
     raw socket retried in a tight loop, each start with an empty data dir.
  3. idle RSS of a freshly started broker (VmRSS).
  4. produce latency at a fixed moderate rate, acks=all.
  5. produce throughput, 1 KB records, acks=1, batched (linger.ms, batch.size).
  6. consume throughput, reading back what 5 wrote.
  7. consumer groups: time from subscribe() until a new group's first member
     gets its assignment (target: group.initial.rebalance.delay.ms + 1 s).
Steps 2 and 3 need a broker process of our own, so they are skipped with
--bootstrap. MB = 10^6 bytes, MiB = 2^20 bytes.

With --cluster [N] (default 3) it measures a replicated cluster instead:
N release brokers on 127.0.0.1 (each a voter of the controller quorum,
fsync on unless --dev, ports below the ephemeral range), topics with
replication factor min(3, N) and min.insync.replicas=2, the throughput topic
with --partitions (default 3) so that the leaders spread over the nodes, and
  a. for comparison, the latency run of step 4 on one broker (RF=1), in the
     same run on the same machine (--no-single-node-comparison skips it);
  b. cluster formation: all N started until every node's Metadata lists N;
  c. produce latency at a fixed rate, acks=all (same method as step 4);
  d. produce throughput, acks=all, idempotent and again not idempotent
     (otherwise as step 5);
  e. consume throughput from the partition leaders (as step 6).
The brokers get SIGTERM at the end (SIGKILL after 20 s), also on errors, and
their log tails are printed if anything failed. With --bootstrap the
running cluster there is measured (b and a skipped). No targets.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "compat-tests"))

import confluent_kafka  # noqa: E402
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from harness import wire  # noqa: E402
from harness.broker import BrokerProcess, free_loopback_port  # noqa: E402
from harness.cluster import ClusterMetadata, TopicInfo, fetch_metadata  # noqa: E402

MB = 1_000_000
MIB = 1 << 20

TARGET_START_TO_READY_MS = 20.0
TARGET_IDLE_RSS_MIB = 15.0
TARGET_PRODUCE_SHARE_OF_LOOPBACK = 0.60

CARGO_LOCK = "/tmp/odradek-cargo.lock"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# 1. Loopback-to-file
# --------------------------------------------------------------------------
def loopback_to_file_mb_s(directory: Path, total_bytes: int, chunk_bytes: int = MIB) -> float:
    """Send total_bytes over a loopback TCP connection; the receiver writes
    them to a file in `directory` and fsyncs at the end. Returns MB/s from
    connect to fsync done: what a broker that receives over TCP and writes
    to disk can at best do on this machine."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    target = directory / "loopback-to-file.bin"
    received = [0]
    failure: list[BaseException] = []

    def receive() -> None:
        try:
            conn, _ = listener.accept()
            buf = bytearray(chunk_bytes)
            view = memoryview(buf)
            with conn, open(target, "wb", buffering=0) as f:
                while True:
                    n = conn.recv_into(buf)
                    if not n:
                        break
                    f.write(view[:n])
                    received[0] += n
                os.fsync(f.fileno())
        except BaseException as e:  # surfaced by the caller
            failure.append(e)

    receiver = threading.Thread(target=receive)
    payload = os.urandom(chunk_bytes)
    started = time.perf_counter()
    receiver.start()
    with socket.create_connection(("127.0.0.1", port)) as sender:
        sent = 0
        while sent < total_bytes:
            sender.sendall(payload)
            sent += len(payload)
    receiver.join()
    elapsed = time.perf_counter() - started
    listener.close()
    target.unlink(missing_ok=True)
    if failure:
        raise failure[0]
    assert received[0] == sent, (received[0], sent)
    return sent / elapsed / MB


# --------------------------------------------------------------------------
# 2. Start-to-ready
# --------------------------------------------------------------------------
def start_to_ready_ms(binary: Path, work_dir: Path, starts: int, dev: bool, timeout_s: float = 30.0) -> list[float]:
    """Process start until the first ApiVersions answer, each start with a new
    empty data dir. Retries the connection in a tight loop (refused
    connections fail in microseconds on loopback)."""
    results = []
    request = wire.api_versions_request_v0(1)
    for i in range(starts):
        data_dir = work_dir / f"start-{i}"
        port = free_loopback_port()
        cmd = [str(binary), "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)] + (["--dev"] if dev else [])
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = started + timeout_s
            while True:
                if time.perf_counter() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"start {i}: no ApiVersions answer (exit code {proc.poll()})")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
                        s.sendall(request)
                        header = s.recv(4)  # the size prefix of the answer is enough
                        if len(header) == 4:
                            break
                except OSError:
                    pass
            results.append((time.perf_counter() - started) * 1000)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            shutil.rmtree(data_dir, ignore_errors=True)
    return results


# --------------------------------------------------------------------------
# 4-6. Client-driven measurements
# --------------------------------------------------------------------------
def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)


@dataclass
class Throughput:
    records: int
    payload_bytes: int
    seconds: float

    @property
    def mb_s(self) -> float:
        return self.payload_bytes / self.seconds / MB

    @property
    def records_s(self) -> float:
        return self.records / self.seconds


def produce_throughput(bootstrap: str, topic: str, records: int, record_bytes: int, acks: str = "1",
                       idempotent: bool = False) -> Throughput:
    """acks=1 (cluster mode: acks=all, idempotent or not), no compression,
    generous batching so librdkafka, not the Python loop, decides the
    request sizes."""
    errors = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": acks,
            "enable.idempotence": idempotent,
            "compression.type": "none",
            "linger.ms": 10,
            "batch.size": 1_000_000,
            "batch.num.messages": 100_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "message.timeout.ms": 120_000,
            "delivery.report.only.error": True,
        }
    )
    payload = os.urandom(record_bytes)
    on_error = lambda err, msg: errors.append(err)  # noqa: E731 (only errors are reported)
    started = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, payload, on_delivery=on_error)
                break
            except BufferError:  # local queue full: let librdkafka send
                producer.poll(0.005)
    remaining = producer.flush(300)
    elapsed = time.perf_counter() - started
    if remaining or errors:
        raise RuntimeError(f"produce: {remaining} undelivered, {len(errors)} errors, e.g. {errors[:3]}")
    return Throughput(records, records * record_bytes, elapsed)


def produce_latency_ms(bootstrap: str, topic: str, rate: int, seconds: float, record_bytes: int) -> list[float]:
    """Send `rate` records/s for `seconds` with acks=all and no linger; the
    latency of a record is produce() to its delivery report."""
    latencies: list[float] = []
    errors = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 0,
            "message.timeout.ms": 60_000,
        }
    )
    payload = os.urandom(record_bytes)

    def report(sent_at: float):
        def on_delivery(err, msg):
            if err is None:
                latencies.append((time.perf_counter() - sent_at) * 1000)
            else:
                errors.append(err)
        return on_delivery

    # One warm-up record so connection set-up is not measured.
    producer.produce(topic, payload)
    producer.flush(30)
    count = int(rate * seconds)
    started = time.perf_counter()
    for i in range(count):
        due = started + i / rate
        while (wait := due - time.perf_counter()) > 0:
            producer.poll(wait)  # serve delivery reports while waiting
        producer.produce(topic, payload, on_delivery=report(time.perf_counter()))
        producer.poll(0)
    producer.flush(60)
    if errors:
        raise RuntimeError(f"latency run: {len(errors)} delivery errors, e.g. {errors[:3]}")
    return latencies


@dataclass
class TransactionRun:
    transactions: int
    records: int
    payload_bytes: int
    seconds: float
    commit_ms: list[float]  # sorted

    @property
    def transactions_s(self) -> float:
        return self.transactions / self.seconds

    @property
    def mb_s(self) -> float:
        return self.payload_bytes / self.seconds / MB


def transactions_throughput(bootstrap: str, topic: str, transactions: int, records_per_transaction: int,
                            record_bytes: int) -> TransactionRun:
    """One transactional producer (confluent-kafka) runs `transactions`
    back-to-back transactions of `records_per_transaction` records each; a
    commit's latency is commit_transaction()'s duration (flush, EndTxn, and
    the wait for the previous transaction's markers)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"odradek-bench-{os.getpid()}-{time.time_ns()}",
            "linger.ms": 5,
            "compression.type": "none",
        }
    )
    producer.init_transactions(30)
    payload = os.urandom(record_bytes)
    commit_ms = []
    started = time.perf_counter()
    for _ in range(transactions):
        producer.begin_transaction()
        for _ in range(records_per_transaction):
            producer.produce(topic, payload)
        committing = time.perf_counter()
        producer.commit_transaction(60)
        commit_ms.append((time.perf_counter() - committing) * 1000)
    elapsed = time.perf_counter() - started
    records = transactions * records_per_transaction
    return TransactionRun(transactions, records, records * record_bytes, elapsed, sorted(commit_ms))


def transaction_rows(bootstrap: str, topic: str, args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """Back-to-back transactions into `topic` (one partition), then a
    read_committed consume of them: the table rows."""
    log(f"transactions: {args.transactions} x {args.records_per_transaction} records, then read_committed")
    txns = transactions_throughput(bootstrap, topic, args.transactions, args.records_per_transaction, args.record_bytes)
    committed = consume_throughput(bootstrap, topic, 1, txns.records)
    commit_ms = " / ".join(f"{percentile(txns.commit_ms, q):.2f}" for q in (0.50, 0.99))
    return [
        (f"transactions of {args.records_per_transaction} x {args.record_bytes} B, one producer (confluent-kafka)",
         f"{txns.transactions_s:.0f} txn/s, {txns.mb_s:.0f} MB/s; commit p50 / p99 {commit_ms} ms", "", ""),
        ("read_committed consume of those transactions (confluent-kafka)",
         f"{committed.mb_s:.0f} MB/s, {committed.records_s:,.0f} rec/s", "", ""),
    ]


def consume_throughput(bootstrap: str, topic: str, partitions: int, records: int) -> Throughput:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "odradek-bench",  # required by the wrapper; nothing is committed
            "isolation.level": "read_committed",  # librdkafka's default, spelled out: reads stop at the LSO
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.max.bytes": 64 * MIB,
            "max.partition.fetch.bytes": 16 * MIB,
            "queued.max.messages.kbytes": 256 * 1024,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    count = payload_bytes = 0
    started = time.perf_counter()
    deadline = started + 300
    try:
        while count < records:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"consume: read {count} of {records} records in 300 s")
            for msg in consumer.consume(num_messages=10_000, timeout=1.0):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"consume: {msg.error()}")
                count += 1
                payload_bytes += len(msg.value())
        return Throughput(count, payload_bytes, time.perf_counter() - started)
    finally:
        consumer.close()


# --------------------------------------------------------------------------
# 4-6 with rdkafka_performance (librdkafka's C benchmark tool)
# --------------------------------------------------------------------------
PERF_PRODUCE_SUMMARY = re.compile(
    r"^% (\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset -?\d+, (\d+) failed\) in (\d+)ms",
    re.M,
)
PERF_CONSUME_SUMMARY = re.compile(r"^% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms", re.M)


class RdkafkaPerformance:
    """Runs rdkafka_performance and parses its final summary line."""

    def __init__(self, binary: Path):
        self.binary = binary
        # Its usage text names the librdkafka version it was built with.
        usage = subprocess.run([str(binary), "-h"], capture_output=True, text=True, timeout=30)
        found = re.search(r"librdkafka version (\S+)", usage.stdout + usage.stderr)
        self.librdkafka_version = found.group(1) if found else "unknown"

    def describe(self) -> str:
        return f"rdkafka_performance (librdkafka {self.librdkafka_version}, C)"

    def run(self, what: str, args: list[str], pattern: re.Pattern, timeout_s: float = 300) -> list[re.Match]:
        """The summary lines: one per second while running, the last one final."""
        cmd = [str(self.binary), *args]
        log(f"  $ {' '.join(cmd)}")
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s)
        output = proc.stdout + proc.stderr
        summaries = list(pattern.finditer(output))  # one per display interval; the last is final
        if proc.returncode != 0 or not summaries:
            tail = "\n".join(output.splitlines()[-20:])
            raise RuntimeError(f"{what}: rdkafka_performance exited with {proc.returncode}:\n{tail}")
        log(f"  {summaries[-1].group(0)}")
        return summaries


def perf_produce_args(bootstrap: str, topic: str, count: int, record_bytes: int) -> list[str]:
    return ["-P", "-t", topic, "-b", bootstrap, "-s", str(record_bytes), "-c", str(count)]


def perf_produce_throughput(tool: RdkafkaPerformance, bootstrap: str, topic: str, records: int,
                            record_bytes: int, acks: str = "1", idempotent: bool = False) -> Throughput:
    """acks=1 (cluster mode: acks=all, idempotent or not), no compression,
    the payload is not copied (rdkafka_performance hands the same buffer to
    every produce call), and the whole run may sit in librdkafka's queue, so
    the client only waits for the broker. Timed by the tool from before the
    first produce call to the last delivery report, connection set-up
    included (as with the Python client)."""
    m = tool.run("produce", perf_produce_args(bootstrap, topic, records, record_bytes) + [
        "-X", f"acks={acks}",
        "-X", f"enable.idempotence={'true' if idempotent else 'false'}",
        "-X", "compression.type=none",
        "-X", "linger.ms=5",
        "-X", "batch.size=1000000",
        "-X", "batch.num.messages=100000",
        "-X", "queue.buffering.max.messages=10000000",
        "-X", "queue.buffering.max.kbytes=2097151",
        "-X", "message.timeout.ms=120000",
    ], PERF_PRODUCE_SUMMARY)[-1]
    produced, _, delivered, failed, ms = (int(g) for g in m.groups())
    if delivered != records or failed:
        raise RuntimeError(f"produce: {delivered} of {records} delivered, {failed} failed")
    return Throughput(delivered, delivered * record_bytes, ms / 1000)


def perf_consume_throughput(tool: RdkafkaPerformance, bootstrap: str, topic: str, partitions: int,
                            records: int) -> Throughput:
    """Simple (assign-style) consumer from the beginning of every partition,
    same fetch sizes as the Python run. Timed by the tool from the first
    message received to the last, so unlike the Python run it leaves out
    the start: connecting, and ~0.45 s that this librdkafka consumer waits
    before its first Fetch (a client-side timer, not the broker), which
    would otherwise be a third of a 1 GB run."""
    args = ["-C", "-t", topic, "-b", bootstrap, "-o", "beginning", "-c", str(records)]
    for p in range(partitions):
        args += ["-p", str(p)]
    m = tool.run("consume", args + [
        "-X", f"fetch.max.bytes={64 * MIB}",
        "-X", f"max.partition.fetch.bytes={16 * MIB}",
        "-X", f"queued.max.messages.kbytes={256 * 1024}",
    ], PERF_CONSUME_SUMMARY)[-1]
    count, payload_bytes, ms = (int(g) for g in m.groups())
    if count < records:
        raise RuntimeError(f"consume: read {count} of {records} records")
    return Throughput(count, payload_bytes, ms / 1000)


def perf_produce_latency_ms(tool: RdkafkaPerformance, bootstrap: str, topic: str, rate: int, seconds: float,
                            record_bytes: int, work_dir: Path, warmup_s: float = 1.0) -> tuple[list[float], float]:
    """rdkafka_performance -l: every payload starts with the wall-clock time
    (µs) of its produce call, and the delivery report subtracts it from the
    time it arrives; -A writes each latency to a file. Rate-limited with -r
    (it pauses 1/rate after each produce call, so the achieved rate comes
    out a little lower; returned as the second value, taken from the
    tool's once-a-second progress lines after the warm-up). The first
    warmup_s worth of records covers connecting and InitProducerId (which
    librdkafka retries after 500 ms at start-up) and is dropped."""
    warmup = int(rate * warmup_s)
    count = warmup + int(rate * seconds)
    latency_file = work_dir / "latencies-us.txt"
    summaries = tool.run("latency run", perf_produce_args(bootstrap, topic, count, record_bytes) + [
        "-l", "-A", str(latency_file), "-r", str(rate),
        "-X", "acks=all",
        "-X", "enable.idempotence=true",
        "-X", "linger.ms=0",
        "-X", "message.timeout.ms=60000",
    ], PERF_PRODUCE_SUMMARY)
    _, _, delivered, failed, ms = (int(g) for g in summaries[-1].groups())
    progress = [(int(m.group(1)), int(m.group(5))) for m in summaries[:-1]
                if int(m.group(5)) >= warmup_s * 1000 and int(m.group(1)) < count]
    if len(progress) >= 2 and progress[-1][1] > progress[0][1]:
        achieved_rate = (progress[-1][0] - progress[0][0]) / ((progress[-1][1] - progress[0][1]) / 1000)
    else:
        achieved_rate = delivered / (ms / 1000)
    latencies_us = [int(line) for line in latency_file.read_text().split()]
    latency_file.unlink()
    if delivered != count or failed or len(latencies_us) != count:
        raise RuntimeError(f"latency run: {delivered} of {count} delivered, {failed} failed, "
                           f"{len(latencies_us)} latencies")
    return [us / 1000 for us in latencies_us[warmup:]], achieved_rate


def group_initial_delay_ms(bootstrap: str) -> int:
    """The broker's group.initial.rebalance.delay.ms, read with DescribeConfigs (Kafka's default if absent)."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": bootstrap})
    broker_id = next(iter(admin.list_topics(timeout=10).brokers))
    resource = ConfigResource(ResourceType.BROKER, str(broker_id))
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    entry = configs.get("group.initial.rebalance.delay.ms")
    return int(entry.value) if entry is not None and entry.value is not None else 3000


def first_assignment_ms(bootstrap: str, topic: str, runs: int) -> list[float]:
    """Time from subscribe() until a new group's first (only) member receives its assignment, each run with
    a fresh group id; confluent-kafka (librdkafka), classic protocol."""
    samples = []
    for run in range(runs):
        consumer = confluent_kafka.Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-first-assignment-{os.getpid()}-{run}-{time.time_ns()}",
            "session.timeout.ms": 6000,
            "enable.auto.commit": False,
        })
        assigned: list[float] = []
        started = time.monotonic()
        consumer.subscribe([topic], on_assign=lambda _consumer, _partitions: assigned.append(time.monotonic()))
        while not assigned and time.monotonic() - started < 30:
            consumer.poll(0.005)
        samples.append((assigned[0] - started) * 1000 if assigned else float("inf"))
        consumer.close()
    return samples


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process (librdkafka's threads included) and of its
    children that have exited (rdkafka_performance runs; our broker is
    still running during the measurements, so it is not counted)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class CpuMeter:
    """CPU seconds spent by the client (this process and the rdkafka_performance
    runs) and, when it is ours, the broker, during a `with` block: shows who
    was busy on a small machine."""

    def __init__(self, broker_pid: int | None):
        self.broker_pid = broker_pid

    def __enter__(self) -> "CpuMeter":
        self.client_start = own_cpu_s()
        self.broker_start = process_cpu_s(self.broker_pid) if self.broker_pid else 0.0
        self.wall_start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self.wall_start
        self.client_s = own_cpu_s() - self.client_start
        self.broker_s = process_cpu_s(self.broker_pid) - self.broker_start if self.broker_pid else None

    def describe(self) -> str:
        broker = f"broker {self.broker_s:.2f} s, " if self.broker_s is not None else ""
        return f"{broker}client {self.client_s:.2f} s CPU in {self.wall_s:.2f} s wall"


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, int(round(fraction * len(sorted_values))) - 1))
    return sorted_values[index]


# --------------------------------------------------------------------------
# Cluster mode (--cluster N): N brokers that are also the controller quorum
# --------------------------------------------------------------------------
# Ports for our own cluster are drawn from below the kernel's ephemeral range
# (32768-60999 here), which outgoing connections take their ports from: a port
# chosen there can be taken by the time the broker binds it.
CLUSTER_PORT_RANGE = (20000, 32000)
CLUSTER_FORM_TIMEOUT_S = 60.0
CLUSTER_STOP_TIMEOUT_S = 20.0
CLUSTER_MIN_INSYNC = 2


def free_ports_below_ephemeral(count: int) -> list[int]:
    """`count` distinct loopback ports in CLUSTER_PORT_RANGE that were free a
    moment ago (all held until all are chosen)."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    socks: list[socket.socket] = []
    try:
        for _ in range(1000):
            if len(socks) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", rng.randrange(*CLUSTER_PORT_RANGE)))
            except OSError:
                s.close()
                continue
            socks.append(s)
        if len(socks) < count:
            raise RuntimeError(f"found only {len(socks)} free ports in {CLUSTER_PORT_RANGE}")
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def parse_addresses(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for a in bootstrap.split(","):
        host, _, port = a.strip().rpartition(":")
        out.append((host, int(port)))
    return out


def cluster_metadata(addresses: list[tuple[str, int]], topics: list[str] | None = None,
                     timeout_s: float = 3.0) -> ClusterMetadata:
    """Metadata v7 (raw, harness.cluster) from the first address that answers."""
    last: Exception | None = None
    for host, port in addresses:
        try:
            return fetch_metadata(host, port, topics, timeout_s)
        except (OSError, wire.ProtocolError) as e:
            last = e
    raise RuntimeError(f"no broker of {addresses} answered Metadata: {last!r}")


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.1):
    """Poll predicate() until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            result = last = predicate()
        except (RuntimeError, OSError, wire.ProtocolError) as e:
            result, last = None, e
        if result:
            return result
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}; last seen: {last!r}")
        time.sleep(interval_s)


def wait_cluster_formed(addresses: list[tuple[str, int]], size: int, timeout_s: float) -> ClusterMetadata:
    """Until every address answers Metadata that lists `size` brokers and names a controller."""
    def formed():
        mds = [fetch_metadata(host, port, None, 2.0) for host, port in addresses]
        return mds[0] if all(len(md.brokers) >= size and md.controller_id >= 0 for md in mds) else None

    return wait_until(formed, timeout_s, f"a cluster of {size} brokers at {addresses}")


def wait_topic_replicated(addresses: list[tuple[str, int]], topic: str, partitions: int, rf: int,
                          timeout_s: float = 60.0) -> TopicInfo:
    """Until every broker's Metadata shows every partition of `topic` with a
    leader and an ISR of `rf` (so no run starts while followers catch up or
    a broker still lacks the topic)."""
    def replicated():
        infos = [fetch_metadata(host, port, [topic], 2.0).topics.get(topic) for host, port in addresses]
        for t in infos:
            if t is None or t.error_code or len(t.partitions) != partitions:
                return None
            if any(p.error_code or p.leader < 0 or len(p.isr) != rf for p in t.partitions.values()):
                return None
        return infos[0]

    return wait_until(replicated, timeout_s, f"{topic}: {partitions} partition(s), each with a leader and ISR of {rf}")


def create_replicated_topic(bootstrap: str, topic: str, partitions: int, rf: int, min_insync: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=rf,
                   config={"min.insync.replicas": str(min_insync)})
    admin.create_topics([new])[topic].result(30)


def describe_partitions(t: TopicInfo) -> str:
    return "; ".join(
        f"p{p.partition}: leader {p.leader}, ISR {','.join(map(str, sorted(p.isr)))}"
        for p in sorted(t.partitions.values(), key=lambda p: p.partition)
    )


class BenchCluster:
    """`size` release brokers on 127.0.0.1, nodes 1..size, each also a voter
    of the controller quorum, each with its own data and log dir."""

    def __init__(self, binary: Path, base_dir: Path, size: int, dev: bool):
        ports = free_ports_below_ephemeral(2 * size)
        self.node_ids = list(range(1, size + 1))
        controller_ports = {n: ports[2 * i + 1] for i, n in enumerate(self.node_ids)}
        voters = ",".join(f"{n}@127.0.0.1:{controller_ports[n]}" for n in self.node_ids)
        self.brokers: dict[int, BrokerProcess] = {
            n: BrokerProcess(
                data_dir=base_dir / f"node-{n}" / "data",
                log_dir=base_dir / f"node-{n}" / "logs",
                port=ports[2 * i],
                dev=dev,
                binary=binary,
                extra_args=["--node-id", str(n), "--controller-listen", f"127.0.0.1:{controller_ports[n]}",
                            "--voters", voters],
            )
            for i, n in enumerate(self.node_ids)
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(b.host, b.port) for b in self.brokers.values()]

    @property
    def pids(self) -> dict[int, int]:
        return {n: b.pid for n, b in self.brokers.items()}

    def start(self, timeout_s: float = CLUSTER_FORM_TIMEOUT_S) -> float:
        """Start all nodes at once (the quorum needs a majority), wait until
        each answers ApiVersions and every node's Metadata lists all of
        them. Returns the seconds from the first launch."""
        started = time.monotonic()
        for b in self.brokers.values():
            b.launch()
        for b in self.brokers.values():
            b.wait_ready(timeout_s, started)
        wait_cluster_formed(self.addresses, len(self.node_ids), max(1.0, started + timeout_s - time.monotonic()))
        return time.monotonic() - started

    def stop(self, timeout_s: float = CLUSTER_STOP_TIMEOUT_S) -> list[str]:
        """SIGTERM to every node at once, SIGKILL to those still running
        after timeout_s. Returns what went wrong (empty when all exited)."""
        problems = []
        started = time.monotonic()
        for b in self.brokers.values():
            if b.running():
                b.proc.send_signal(signal.SIGTERM)
        deadline = started + timeout_s
        for n, b in self.brokers.items():
            if b.proc is None:
                continue
            try:
                b.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                b.proc.kill()
                b.proc.wait()
                problems.append(f"node {n} did not exit within {timeout_s:.0f} s of SIGTERM; killed (log {b.log_path})")
                continue
            if b.proc.returncode not in (0, -signal.SIGTERM):
                problems.append(f"node {n} exited with code {b.proc.returncode} (log {b.log_path})")
        self.stop_s = time.monotonic() - started
        return problems

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- node {n}: {b.log_path}\n{b.log_tail(lines)}" for n, b in self.brokers.items())


class ClusterCpuMeter(CpuMeter):
    """CpuMeter over several broker processes: their total and each node's share."""

    def __init__(self, broker_pids: dict[int, int]):
        super().__init__(None)
        self.broker_pids = broker_pids

    def __enter__(self) -> "ClusterCpuMeter":
        self.node_start = {n: process_cpu_s(pid) for n, pid in self.broker_pids.items()}
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self.node_s = {n: process_cpu_s(pid) - self.node_start[n] for n, pid in self.broker_pids.items()}

    def describe(self) -> str:
        if not self.broker_pids:
            return super().describe()
        per_node = " + ".join(f"node {n} {s:.2f}" for n, s in self.node_s.items())
        return (f"brokers {sum(self.node_s.values()):.2f} s ({per_node}), "
                f"client {self.client_s:.2f} s CPU in {self.wall_s:.2f} s wall")


def measure_latency(perf: RdkafkaPerformance | None, bootstrap: str, topic: str, args: argparse.Namespace,
                    work_dir: Path) -> tuple[list[float], str]:
    """The single-node latency measurement (acks=all, idempotent, no linger,
    fixed rate): sorted latencies in ms and a note on the rate. Starts with
    no dirty pages (a build or an earlier run leaves plenty), which
    would otherwise be written back during the broker's fsyncs."""
    os.sync()
    if perf:
        latencies, achieved_rate = perf_produce_latency_ms(
            perf, bootstrap, topic, args.latency_rate, args.latency_seconds, args.record_bytes, work_dir
        )
        rate_note = f"{args.latency_rate} rec/s ({achieved_rate:.0f} achieved)"
    else:
        latencies = produce_latency_ms(bootstrap, topic, args.latency_rate, args.latency_seconds, args.record_bytes)
        rate_note = f"{args.latency_rate} rec/s"
    latencies.sort()
    return latencies, rate_note


def format_latency(latencies: list[float]) -> str:
    return " / ".join(f"{percentile(latencies, q):.2f}" for q in (0.50, 0.99, 0.999)) + " ms"


def run_cluster(args: argparse.Namespace, perf: RdkafkaPerformance | None, client: str, client_short: str) -> int:
    """--cluster: acks=all latency and throughput and consume throughput
    against a replicated topic (RF = min(3, brokers), min.insync.replicas=2)
    on N brokers of our own (or the running cluster at --bootstrap)."""
    # SIGTERM to this script unwinds through the finally below, which stops the brokers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    work_dir = Path(tempfile.mkdtemp(prefix="odradek-bench-cluster-", dir=args.work_dir))
    cluster: BenchCluster | None = None
    rows: list[tuple[str, str, str, str]] = []  # metric, value, target, result
    failed = True
    stop_problems: list[str] = []
    size = args.cluster
    try:
        binary = None if args.bootstrap else (args.binary or build_release())
        suffix = f"{int(time.time())}-{os.getpid()}"

        # The same latency run on one broker (RF=1) first, on this machine
        # and in this run, as the reference for what replication adds.
        if binary and not args.no_single_node_comparison:
            log("single-node comparison: one broker, acks=all latency, RF=1")
            single = BrokerProcess(data_dir=work_dir / "single" / "data", log_dir=work_dir / "single" / "logs",
                                   port=free_ports_below_ephemeral(1)[0], dev=args.dev, binary=binary)
            single.start()
            try:
                topic = f"bench-latency-single-{suffix}"
                create_topic(single.bootstrap, topic, 1)
                single_latencies, single_rate = measure_latency(perf, single.bootstrap, topic, args, work_dir)
            finally:
                single.stop()
            shutil.rmtree(work_dir / "single", ignore_errors=True)
            rows.append((
                f"single node for comparison (same run, RF=1): produce latency p50 / p99 / p999, acks=all, "
                f"{single_rate}, {args.record_bytes} B ({client_short})",
                format_latency(single_latencies), "", "",
            ))

        load_before = os.getloadavg()[0]
        if binary:
            cluster = BenchCluster(binary, work_dir, size, args.dev)
            log(f"starting {size} brokers: {cluster.bootstrap} (logs under {work_dir})")
            formed_s = cluster.start()
            rows.insert(0, (
                f"cluster formed: {size} processes started until every node's Metadata lists {size} brokers",
                f"{formed_s:.2f} s", "", "",
            ))
            bootstrap, addresses = cluster.bootstrap, cluster.addresses
        else:
            bootstrap, addresses = args.bootstrap, parse_addresses(args.bootstrap)
            size = len(cluster_metadata(addresses).brokers)
        rf = min(3, size)
        min_insync = min(CLUSTER_MIN_INSYNC, rf)
        replication = f"RF={rf}, min.insync.replicas={min_insync}"

        latency_topic, throughput_topic = f"bench-latency-{suffix}", f"bench-throughput-{suffix}"
        plain_topic = f"bench-throughput-plain-{suffix}"
        create_replicated_topic(bootstrap, latency_topic, 1, rf, min_insync)
        create_replicated_topic(bootstrap, throughput_topic, args.partitions, rf, min_insync)
        create_replicated_topic(bootstrap, plain_topic, args.partitions, rf, min_insync)
        wait_topic_replicated(addresses, latency_topic, 1, rf)
        wait_topic_replicated(addresses, plain_topic, args.partitions, rf)
        layout = wait_topic_replicated(addresses, throughput_topic, args.partitions, rf)
        log(f"{throughput_topic}: {describe_partitions(layout)}")
        rows.append((f"throughput topic, {args.partitions} partition(s), {replication}",
                     describe_partitions(layout), "", ""))

        log(f"produce latency: {args.latency_rate} records/s for {args.latency_seconds} s, acks=all, {replication}")
        latencies, rate_note = measure_latency(perf, bootstrap, latency_topic, args, work_dir)
        rows.append((
            f"produce latency p50 / p99 / p999, acks=all, {replication}, {rate_note}, {args.record_bytes} B "
            f"({client_short})",
            format_latency(latencies), "", "",
        ))

        broker_pids = cluster.pids if cluster else {}
        # Idempotent first (the producer a durable setup uses; its topic is
        # the one consumed below), then the same without idempotence, which
        # lets librdkafka keep more requests in flight per broker.
        for idempotent, topic in ((True, throughput_topic), (False, plain_topic)):
            kind = "idempotent" if idempotent else "not idempotent"
            log(f"produce throughput: {args.records} x {args.record_bytes} B, acks=all ({kind}), {replication}")
            os.sync()
            with ClusterCpuMeter(broker_pids) as produce_cpu:
                if perf:
                    produced = perf_produce_throughput(perf, bootstrap, topic, args.records, args.record_bytes,
                                                       acks="all", idempotent=idempotent)
                else:
                    produced = produce_throughput(bootstrap, topic, args.records, args.record_bytes,
                                                  acks="all", idempotent=idempotent)
            rows.append((
                f"produce throughput, acks=all ({kind}), {replication}, {args.records:,} x {args.record_bytes} B "
                f"records ({client_short})",
                f"{produced.mb_s:.0f} MB/s, {produced.records_s:,.0f} rec/s", "", "",
            ))
            rows.append((f"CPU during produce throughput ({kind})", produce_cpu.describe(), "", ""))

        log("consume throughput (from the partition leaders)")
        with ClusterCpuMeter(broker_pids) as consume_cpu:
            if perf:
                consumed = perf_consume_throughput(perf, bootstrap, throughput_topic, args.partitions, args.records)
            else:
                consumed = consume_throughput(bootstrap, throughput_topic, args.partitions, args.records)
        rows.append((
            f"consume throughput, from the leaders ({client_short})",
            f"{consumed.mb_s:.0f} MB/s, {consumed.records_s:,.0f} rec/s", "", "",
        ))
        rows.append(("CPU during consume", consume_cpu.describe(), "", ""))

        txn_topic = f"bench-transactions-{suffix}"
        create_replicated_topic(bootstrap, txn_topic, 1, args.cluster, min(2, args.cluster))
        rows.extend(transaction_rows(bootstrap, txn_topic, args))

        after = cluster_metadata(addresses, [throughput_topic]).topics.get(throughput_topic)
        rows.append(("throughput topic (idempotent run) after the runs",
                     describe_partitions(after) if after else "absent", "", ""))
        if cluster:
            rss = ", ".join(f"node {n} {b.rss_kib() / 1024:.1f}" for n, b in cluster.brokers.items())
            rows.append(("RSS after the runs", f"{rss} MiB", "", ""))
        # Other work on a shared machine shows up in the latency tail first.
        rows.append(("load average (1 min) before / after the cluster runs",
                     f"{load_before:.2f} / {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)", "", ""))
        failed = False
    finally:
        if cluster:
            log("stopping the brokers (SIGTERM)")
            stop_problems = cluster.stop()
            for problem in stop_problems:
                log(f"WARNING: {problem}")
            rows.append(("all brokers exited after SIGTERM (sent to all at once)",
                         f"{cluster.stop_s:.1f} s" + (" (with problems, see below)" if stop_problems else ""), "", ""))
            if failed or stop_problems:
                log(cluster.log_tails())
        if cluster and (failed or stop_problems):
            # Keep the broker logs for a look; drop the data.
            for n in cluster.node_ids:
                shutil.rmtree(work_dir / f"node-{n}" / "data", ignore_errors=True)
            log(f"broker logs kept under {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)

    fsync = "fsync off (--dev)" if args.dev else "fsync on"
    where = (f"{size}-node cluster of our own (release build, {fsync}, {args.partitions} partition(s))"
             if not args.bootstrap else f"cluster at {args.bootstrap}")
    print(f"\n### odradek benchmark: {where}, {os.cpu_count()} cores\n")
    print(f"Client: {client}. Bootstrap: every broker; produce and consume go to the partition leaders.\n")
    print("| metric | value | target | result |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if stop_problems:
        print("\nShutdown problems:\n" + "\n".join(f"- {p}" for p in stop_problems))
    return 1 if stop_problems else 0


# --------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------
def build_release() -> Path:
    # Serialized with the other cargo users of this machine (flock, when there is one).
    lock = ["flock", CARGO_LOCK] if shutil.which("flock") else []
    log(f"building: {' '.join(lock + ['cargo', 'build', '--release'])}")
    subprocess.run(lock + ["cargo", "build", "--release", "--bins"], cwd=REPO_ROOT, check=True)
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    return target_dir / "release" / "odradek"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", help="measure this running broker instead of starting one")
    parser.add_argument("--client", choices=("auto", "rdkafka_performance", "python"), default="auto",
                        help="client for the latency, produce and consume runs: librdkafka's C tool "
                             "rdkafka_performance (default when scripts/bench built it) or confluent-kafka "
                             "from Python")
    parser.add_argument("--rdkafka-performance", type=Path, default=os.environ.get("RDKAFKA_PERFORMANCE") or None,
                        help="rdkafka_performance binary (default: $RDKAFKA_PERFORMANCE, set by scripts/bench)")
    parser.add_argument("--binary", type=Path, help="broker binary (default: cargo build --release)")
    parser.add_argument("--dev", action="store_true",
                        help="start our broker with --dev (no fsync), to see what fsync costs")
    parser.add_argument("--work-dir", type=Path, help="parent of the temporary data dir (default: system temp)")
    parser.add_argument("--records", type=int, default=1_000_000, help="records for produce/consume throughput")
    parser.add_argument("--record-bytes", type=int, default=1024)
    parser.add_argument("--partitions", type=int,
                        help="partitions of the throughput topic (default: 1; 3 with --cluster)")
    parser.add_argument("--cluster", type=int, nargs="?", const=3, metavar="N",
                        help="cluster mode: start N (default 3) release brokers forming one cluster (with "
                             "--bootstrap: measure that running cluster) and measure acks=all latency and "
                             "throughput and consume throughput on a topic with replication factor min(3, N) "
                             "and min.insync.replicas=2")
    parser.add_argument("--no-single-node-comparison", action="store_true",
                        help="with --cluster: skip the acks=all latency run on one broker that precedes "
                             "the cluster runs")
    parser.add_argument("--latency-rate", type=int, default=1000, help="records/s for the latency run")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--transactions", type=int, default=300, help="transactions for the transaction run")
    parser.add_argument("--records-per-transaction", type=int, default=100)
    parser.add_argument("--group-runs", type=int, default=3, help="new groups timed for the first assignment")
    parser.add_argument("--starts", type=int, default=10, help="starts averaged for start-to-ready")
    parser.add_argument("--loopback-mib", type=int, default=1024, help="MiB per loopback-to-file run")
    parser.add_argument("--loopback-runs", type=int, default=2,
                        help="loopback-to-file runs before and again after the broker runs (median reported)")
    args = parser.parse_args()
    if args.partitions is None:
        args.partitions = 3 if args.cluster else 1
    if args.cluster is not None and args.cluster < 1:
        parser.error("--cluster N needs N >= 1")

    perf: RdkafkaPerformance | None = None
    if args.client != "python":
        if args.rdkafka_performance and os.access(args.rdkafka_performance, os.X_OK):
            perf = RdkafkaPerformance(args.rdkafka_performance)
        elif args.client == "rdkafka_performance":
            parser.error("--client rdkafka_performance: no rdkafka_performance binary "
                         "(scripts/bench builds it; or pass --rdkafka-performance)")
        else:
            log("WARNING: no rdkafka_performance binary; falling back to the Python client (confluent-kafka)")
    client = perf.describe() if perf else (
        f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]}, Python)")
    client_short = "rdkafka_performance" if perf else "confluent-kafka"
    log(f"client: {client}")
    if args.cluster:
        return run_cluster(args, perf, client, client_short)

    work_dir = Path(tempfile.mkdtemp(prefix="odradek-bench-", dir=args.work_dir))
    broker = None
    rows: list[tuple[str, str, str, str]] = []  # metric, value, target, result
    try:
        binary = None
        if not args.bootstrap:
            binary = args.binary or build_release()

        def measure_loopback(runs: int) -> None:
            log(f"loopback-to-file: {runs} x {args.loopback_mib} MiB into {work_dir}")
            for _ in range(runs):
                os.sync()  # start each run without the previous run's dirty pages
                loopback_runs.append(loopback_to_file_mb_s(work_dir, args.loopback_mib * MIB))

        # Measured before and after the broker runs: on a shared machine the
        # rate drifts, and the median of both sides is the fairer reference.
        loopback_runs: list[float] = []
        measure_loopback(args.loopback_runs)

        if binary:
            log(f"start-to-ready: {args.starts} starts of {binary}")
            starts = start_to_ready_ms(binary, work_dir, args.starts, args.dev)
            mean = statistics.mean(starts)
            rows.append((
                f"start-to-ready, mean of {len(starts)} (min/max)",
                f"{mean:.1f} ms ({min(starts):.1f}/{max(starts):.1f})",
                f"<= {TARGET_START_TO_READY_MS:.0f} ms",
                verdict(mean <= TARGET_START_TO_READY_MS),
            ))

            broker = BrokerProcess(
                data_dir=work_dir / "data", log_dir=work_dir / "logs", dev=args.dev, binary=binary
            )
            broker.start()
            time.sleep(2.0)  # idle
            idle_rss = broker.rss_kib() / 1024
            rows.append((
                "idle RSS after start",
                f"{idle_rss:.1f} MiB",
                f"<= {TARGET_IDLE_RSS_MIB:.0f} MiB",
                verdict(idle_rss <= TARGET_IDLE_RSS_MIB),
            ))
            bootstrap = broker.bootstrap
        else:
            bootstrap = args.bootstrap

        suffix = f"{int(time.time())}-{os.getpid()}"
        latency_topic, throughput_topic = f"bench-latency-{suffix}", f"bench-throughput-{suffix}"
        create_topic(bootstrap, latency_topic, 1)
        create_topic(bootstrap, throughput_topic, args.partitions)

        log(f"produce latency: {args.latency_rate} records/s for {args.latency_seconds} s, acks=all")
        if perf:
            latencies, achieved_rate = perf_produce_latency_ms(
                perf, bootstrap, latency_topic, args.latency_rate, args.latency_seconds, args.record_bytes, work_dir
            )
            rate_note = f"{args.latency_rate} rec/s ({achieved_rate:.0f} achieved)"
        else:
            latencies = produce_latency_ms(
                bootstrap, latency_topic, args.latency_rate, args.latency_seconds, args.record_bytes
            )
            rate_note = f"{args.latency_rate} rec/s"
        latencies.sort()
        rows.append((
            f"produce latency p50 / p99 / p999, acks=all, {rate_note}, {args.record_bytes} B ({client_short})",
            " / ".join(f"{percentile(latencies, q):.2f}" for q in (0.50, 0.99, 0.999)) + " ms",
            "", "",
        ))

        log(f"produce throughput: {args.records} x {args.record_bytes} B, acks=1")
        os.sync()  # same starting point as the loopback runs
        broker_pid = broker.pid if broker else None
        with CpuMeter(broker_pid) as produce_cpu:
            if perf:
                produced = perf_produce_throughput(perf, bootstrap, throughput_topic, args.records, args.record_bytes)
            else:
                produced = produce_throughput(bootstrap, throughput_topic, args.records, args.record_bytes)
        measure_loopback(args.loopback_runs)
        loopback = statistics.median(loopback_runs)
        rows.insert(0, (
            f"loopback-to-file rate, median of {len(loopback_runs)} runs around the others (min/max)",
            f"{loopback:.0f} MB/s ({min(loopback_runs):.0f}/{max(loopback_runs):.0f})",
            "reference", "",
        ))
        share = produced.mb_s / loopback
        rows.append((
            f"produce throughput, acks=1, {args.record_bytes} B records ({client_short})",
            f"{produced.mb_s:.0f} MB/s, {produced.records_s:,.0f} rec/s ({share:.0%} of loopback-to-file)",
            f">= {TARGET_PRODUCE_SHARE_OF_LOOPBACK:.0%} of loopback-to-file",
            verdict(share >= TARGET_PRODUCE_SHARE_OF_LOOPBACK),
        ))
        rows.append(("CPU during produce throughput", produce_cpu.describe(), "", ""))

        log("consume throughput")
        with CpuMeter(broker_pid) as consume_cpu:
            if perf:
                consumed = perf_consume_throughput(perf, bootstrap, throughput_topic, args.partitions, args.records)
            else:
                consumed = consume_throughput(bootstrap, throughput_topic, args.partitions, args.records)
        rows.append((
            f"consume throughput ({client_short})",
            f"{consumed.mb_s:.0f} MB/s, {consumed.records_s:,.0f} rec/s",
            "", "",
        ))
        rows.append(("CPU during consume", consume_cpu.describe(), "", ""))

        txn_topic = f"bench-transactions-{suffix}"
        create_topic(bootstrap, txn_topic, 1)
        rows.extend(transaction_rows(bootstrap, txn_topic, args))

        delay_ms = group_initial_delay_ms(bootstrap)
        log(f"first assignment of a new group's member ({args.group_runs} groups, initial delay {delay_ms} ms)")
        firsts = sorted(first_assignment_ms(bootstrap, latency_topic, args.group_runs))
        worst = firsts[-1]
        rows.append((
            f"new group's first member assigned after subscribe, median (max) of {len(firsts)} (confluent-kafka)",
            f"{statistics.median(firsts):.0f} ms ({worst:.0f})",
            f"<= group.initial.rebalance.delay.ms ({delay_ms}) + 1000 ms",
            verdict(worst <= delay_ms + 1000),
        ))
        if broker:
            rows.append(("RSS after the runs", f"{broker.rss_kib() / 1024:.1f} MiB", "", ""))
    finally:
        if broker and broker.running():
            broker.stop()
        shutil.rmtree(work_dir, ignore_errors=True)

    fsync = "fsync off (--dev)" if args.dev else "fsync on"
    where = f"own broker (release build, {fsync}, {args.partitions} partition(s))" if not args.bootstrap else args.bootstrap
    print(f"\n### odradek benchmark: {where}, {os.cpu_count()} cores\n")
    print(f"Client: {client}.\n")
    print("| metric | value | target | result |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
