#!/usr/bin/env python3
"""odradek benchmark, driven by librdkafka (confluent-kafka). Run it through
scripts/bench, which provides the Python environment.

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
Steps 2 and 3 need a broker process of our own, so they are skipped with
--bootstrap. MB = 10^6 bytes, MiB = 2^20 bytes.
"""

from __future__ import annotations

import argparse
import os
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

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from harness import wire  # noqa: E402
from harness.broker import BrokerProcess, free_loopback_port  # noqa: E402

MB = 1_000_000
MIB = 1 << 20

TARGET_START_TO_READY_MS = 20.0
TARGET_IDLE_RSS_MIB = 15.0
TARGET_PRODUCE_SHARE_OF_LOOPBACK = 0.60


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


def produce_throughput(bootstrap: str, topic: str, records: int, record_bytes: int) -> Throughput:
    """acks=1, no compression, generous batching so librdkafka, not the
    Python loop, decides the request sizes."""
    errors = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "1",
            "enable.idempotence": False,
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


def consume_throughput(bootstrap: str, topic: str, partitions: int, records: int) -> Throughput:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "odradek-bench",  # required by the wrapper; nothing is committed
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


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process, librdkafka's threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds spent by the client (this process) and, when it is ours,
    the broker, during a `with` block: shows who was busy on a small machine."""

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
# Orchestration
# --------------------------------------------------------------------------
def build_release() -> Path:
    log("building: cargo build --release")
    subprocess.run(["cargo", "build", "--release", "--bins"], cwd=REPO_ROOT, check=True)
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    return target_dir / "release" / "odradek"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", help="measure this running broker instead of starting one")
    parser.add_argument("--binary", type=Path, help="broker binary (default: cargo build --release)")
    parser.add_argument("--dev", action="store_true",
                        help="start our broker with --dev (no fsync), to see what fsync costs")
    parser.add_argument("--work-dir", type=Path, help="parent of the temporary data dir (default: system temp)")
    parser.add_argument("--records", type=int, default=1_000_000, help="records for produce/consume throughput")
    parser.add_argument("--record-bytes", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--latency-rate", type=int, default=1000, help="records/s for the latency run")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--starts", type=int, default=10, help="starts averaged for start-to-ready")
    parser.add_argument("--loopback-mib", type=int, default=1024, help="MiB per loopback-to-file run")
    parser.add_argument("--loopback-runs", type=int, default=2,
                        help="loopback-to-file runs before and again after the broker runs (median reported)")
    args = parser.parse_args()

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
        latencies = sorted(produce_latency_ms(
            bootstrap, latency_topic, args.latency_rate, args.latency_seconds, args.record_bytes
        ))
        rows.append((
            f"produce latency p50 / p99 / p999, acks=all, {args.latency_rate} rec/s, {args.record_bytes} B",
            " / ".join(f"{percentile(latencies, q):.2f}" for q in (0.50, 0.99, 0.999)) + " ms",
            "", "",
        ))

        log(f"produce throughput: {args.records} x {args.record_bytes} B, acks=1")
        os.sync()  # same starting point as the loopback runs
        broker_pid = broker.pid if broker else None
        with CpuMeter(broker_pid) as produce_cpu:
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
            f"produce throughput, acks=1, {args.record_bytes} B records",
            f"{produced.mb_s:.0f} MB/s, {produced.records_s:,.0f} rec/s ({share:.0%} of loopback-to-file)",
            f">= {TARGET_PRODUCE_SHARE_OF_LOOPBACK:.0%} of loopback-to-file",
            verdict(share >= TARGET_PRODUCE_SHARE_OF_LOOPBACK),
        ))
        rows.append(("CPU during produce throughput", produce_cpu.describe(), "", ""))

        log("consume throughput")
        with CpuMeter(broker_pid) as consume_cpu:
            consumed = consume_throughput(bootstrap, throughput_topic, args.partitions, args.records)
        rows.append((
            "consume throughput",
            f"{consumed.mb_s:.0f} MB/s, {consumed.records_s:,.0f} rec/s",
            "", "",
        ))
        rows.append(("CPU during consume", consume_cpu.describe(), "", ""))
        if broker:
            rows.append(("RSS after the runs", f"{broker.rss_kib() / 1024:.1f} MiB", "", ""))
    finally:
        if broker and broker.running():
            broker.stop()
        shutil.rmtree(work_dir, ignore_errors=True)

    fsync = "fsync off (--dev)" if args.dev else "fsync on"
    where = f"own broker (release build, {fsync}, {args.partitions} partition(s))" if not args.bootstrap else args.bootstrap
    print(f"\n### odradek benchmark: {where}, {os.cpu_count()} cores\n")
    print("| metric | value | target | result |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
