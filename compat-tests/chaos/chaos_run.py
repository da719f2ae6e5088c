"""The chaos workload: idempotent acks=all producers against a 3-node
odradek cluster while faults strike on a seeded schedule, then a read-back of
every partition and the checker (chaos_checker.py).

- Topic: replication factor 3, min.insync.replicas=2, several partitions.
- Producers: confluent-kafka, enable.idempotence=true, acks=all; each record
  value encodes (producer id, sequence); every produce() call, every
  acknowledgement (partition, offset, time) and every failure is recorded.
- Faults (random.Random(seed)): kill -9 of a partition leader and restart;
  SIGSTOP/SIGCONT of a broker; isolation of a broker (network namespaces;
  emulated by SIGSTOP where namespaces are unavailable, and the report says
  so); kill -9 of two brokers at once (only one alive: every write must be
  refused); a rolling restart with SIGTERM. Between faults the cluster is
  given time to heal (all ISRs back to 3); when it does not, that is noted.
- Windows with fewer than min.insync.replicas brokers alive (running, not
  paused, not isolated) are tracked for the checker.

The transactional workload (--transactions, ChaosConfig.transactions):
transactional producers (TxnWorker) instead, a seeded fraction of their
transactions aborted on purpose, each transaction's outcome recorded as
committed / aborted / unknown; one more fault kind, kill_coordinator (kill -9
of the node FindCoordinator names for a transactional.id); at the end the
last stable offset must reach the high watermark everywhere, and the
read_committed and read_uncommitted logs go to check_transactions. See
README.md in this folder.

Short forms: test_chaos.py (every fault once, ~60-80 s; transactional ~25-40 s).
Long form: `scripts/chaos [--transactions] [--seed N] [--duration S]`, or
`python chaos/chaos_run.py [--transactions] --seed N --duration S` from compat-tests/.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # harness
sys.path.insert(0, str(HERE))

sys.path.insert(0, str(HERE.parent / "transactions"))  # txn_wire: FindCoordinator, DescribeTransactions

from chaos_checker import (  # noqa: E402
    ABORTED,
    COMMITTED,
    UNKNOWN,
    Ack,
    Attempt,
    Failure,
    Report,
    Txn,
    TxnAck,
    TxnReport,
    Window,
    check,
    check_transactions,
    encode_txn_value,
    encode_value,
)
from harness.cluster import Cluster, ClusterError  # noqa: E402

FAULT_KINDS = ("kill_leader", "pause", "isolate", "kill_two", "rolling_restart")
# --transactions: also kill -9 the node FindCoordinator names as a transactional.id's coordinator
TXN_FAULT_KINDS = FAULT_KINDS + ("kill_coordinator",)
# The coordinator aborts a transaction soon after its transaction.timeout.ms (default: every 10 s)
TXN_BROKER_PROPS = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000"}


@dataclass
class ChaosConfig:
    seed: int = 1
    duration_s: float | None = None  # long form: faults until this much time has passed; None: each kind once
    kinds: tuple[str, ...] = FAULT_KINDS
    partitions: int = 4
    producers: int = 3
    rate_per_producer: float = 80.0  # records per second
    value_pad: int = 40
    min_insync: int = 2
    # The workload's producers retry for a long time: a record that times out in the client while it
    # is possibly persisted makes librdkafka bump the epoch and re-send what was still queued under new
    # sequence numbers, which duplicates records the broker did store (librdkafka's documented
    # behaviour, not a broker bug). With a long message.timeout.ms nothing times out and any duplicate
    # is the broker's.
    message_timeout_ms: int = 120000
    request_timeout_ms: int = 3000
    flush_timeout_s: float = 30.0  # at the end; what is still unresolved then is purged and reported
    # While two brokers are dead, probe producers (not idempotent, retries=0, short timeouts) write
    # to every partition: each probe's client gives up before the brokers come back, so an ack of a
    # probe is an ack given with fewer than min.insync.replicas brokers alive.
    probe_timeout_ms: int = 2000
    probe_request_timeout_ms: int = 1500
    probe_span_s: float = 2.0  # how long the probes are produced
    probe_rate: float = 40.0
    down_s: tuple[float, float] = (2.0, 4.0)  # how long a killed / paused / isolated broker stays out
    grace_s: float = 1.0  # acks within this long after a window opens were already on their way
    settle_timeout_s: float = 25.0
    quiet_s: float = 1.0  # healthy time between faults
    warmup_s: float = 2.0
    fault_budget_s: float | None = None  # no new fault after this long (a cluster that does not heal)
    read_timeout_s: float = 60.0  # per partition, for the read-back
    network: str = "auto"
    client_debug: str = ""  # librdkafka debug contexts for the producers (e.g. "eos,msg"), logged to librdkafka.log
    broker_props: dict = field(default_factory=dict)
    # The transactional workload (--transactions): instead of the idempotent producers, txn_producers
    # transactional producers (transactional.id chaos-txn-<seed>-<i>), each running transactions of
    # txn_records records on random partitions; a seeded txn_abort_fraction is aborted on purpose.
    transactions: bool = False
    txn_producers: int = 2
    txn_records: tuple[int, int] = (2, 6)
    txn_abort_fraction: float = 0.2
    txn_interval_s: float = 0.05  # pause between one producer's transactions
    transaction_timeout_ms: int = 10000  # also the producers' message.timeout.ms (librdkafka derives it)
    txn_call_timeout_s: float = 10.0  # each init/commit/abort call; a retriable timeout is retried
    txn_give_up_s: float = 45.0  # retrying a commit (or abort) this long, the producer is recreated
    lso_margin_s: float = 10.0  # at the end: transaction.timeout.ms + 2 cleanup intervals + this for LSO = HW
    # at the end, producer 0 leaves one transaction open (records flushed, never committed or aborted):
    # only the coordinator's timeout can end it, and the LSO must still reach the high watermark
    txn_abandon_at_end: bool = True

    @property
    def lso_deadline_s(self) -> float:
        cleanup = float(self.broker_props.get("transaction.abort.timed.out.transaction.cleanup.interval.ms", 10000))
        return (self.transaction_timeout_ms + 2 * cleanup) / 1000.0 + self.lso_margin_s

    def transactional_id(self, producer: int) -> str:
        return f"chaos-txn-{self.seed}-{producer}"

    @property
    def delivery_deadline_s(self) -> float:
        """The longest a workload producer keeps trying a record: message.timeout.ms
        plus one request.timeout.ms for a request in flight, and a margin."""
        return (self.message_timeout_ms + self.request_timeout_ms) / 1000.0 + 1.0

    @property
    def probe_deadline_s(self) -> float:
        return (self.probe_timeout_ms + self.probe_request_timeout_ms) / 1000.0 + 1.0

    @property
    def kill_two_min_s(self) -> float:
        """Two brokers stay dead at least this long: the grace, the probes, and their clients giving up."""
        return self.grace_s + self.probe_span_s + self.probe_deadline_s + 0.5


# --------------------------------------------------------------------------
# History, shared by the producer threads
# --------------------------------------------------------------------------
class History:
    def __init__(self):
        self.attempts: list[Attempt] = []
        self.acks: list[Ack] = []
        self.failures: list[Failure] = []
        self.client_errors: list[tuple[float, int, str]] = []  # (t, producer, error) from error_cb
        # the transactional workload
        self.txns: list[Txn] = []
        self.txn_acks: list[TxnAck] = []
        self.txn_failures: list[tuple[float, int, int, int, int, str]] = []  # (t, producer, txn, index, partition, error)
        self.txn_events: list[tuple[float, int, str]] = []  # (t, producer, what the client did: retries, recreations)
        self.lock = threading.Lock()

    def last_ack_time(self) -> float:
        return self.acks[-1].t_ack if self.acks else 0.0


class ClientSettings:
    """What both producer workers share: quick reconnects and metadata refreshes (failovers take seconds),
    client errors recorded in the history, a fatal error remembered so the worker recreates its producer."""

    def _client_settings(self) -> dict:
        return {
            "retry.backoff.ms": 100,
            "retry.backoff.max.ms": 500,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "socket.connection.setup.timeout.ms": 2000,
            "topic.metadata.refresh.interval.ms": 2000,
            "error_cb": self._on_error,
            "logger": self.logger,
            **({"debug": self.cfg.client_debug} if self.cfg.client_debug else {}),
        }

    def _on_error(self, err) -> None:
        self.history.client_errors.append((time.monotonic(), self.producer_id, f"{err}"))
        if err.fatal():
            self._fatal = True


class ProducerWorker(ClientSettings, threading.Thread):
    def __init__(self, producer_id: int, bootstrap: str, topic: str, cfg: ChaosConfig, history: History,
                 stop: threading.Event, logger: logging.Logger, probe: bool = False):
        super().__init__(name=f"chaos-{'probe' if probe else 'producer'}-{producer_id}", daemon=True)
        self.probe = probe
        self.message_timeout_ms = cfg.probe_timeout_ms if probe else cfg.message_timeout_ms
        self.request_timeout_ms = cfg.probe_request_timeout_ms if probe else cfg.request_timeout_ms
        self.rate = cfg.probe_rate if probe else cfg.rate_per_producer
        self.give_up_after_s = cfg.probe_deadline_s if probe else cfg.delivery_deadline_s
        self.producer_id = producer_id
        self.bootstrap = bootstrap
        self.topic = topic
        self.cfg = cfg
        self.history = history
        self.stop_event = stop
        self.logger = logger
        self.unflushed = 0
        self.recreated = 0
        self.exception: BaseException | None = None
        self._fatal = False

    def _config(self) -> dict:
        return {
            "bootstrap.servers": self.bootstrap,
            "acks": "all",
            "enable.idempotence": not self.probe,
            **({"retries": 0} if self.probe else {}),
            "linger.ms": 5,
            "message.timeout.ms": self.message_timeout_ms,
            "request.timeout.ms": self.request_timeout_ms,
            **self._client_settings(),
        }

    def _callback(self, seq: int, partition: int):
        pid = self.producer_id
        history = self.history

        def on_delivery(err, msg):
            now = time.monotonic()
            if err is None:
                history.acks.append(Ack(pid, seq, partition, msg.offset(), now))
            else:
                history.failures.append(Failure(pid, seq, partition, now, err.str()))

        return on_delivery

    def run(self) -> None:
        from confluent_kafka import Producer

        try:
            producer = Producer(self._config())
            seq = 0
            interval = 1.0 / self.rate
            next_t = time.monotonic()
            while not self.stop_event.is_set():
                if self._fatal:  # e.g. a sequence error the client cannot recover from: note it, start afresh
                    self._finish(producer)
                    producer = Producer(self._config())
                    self._fatal = False
                    self.recreated += 1
                partition = seq % self.cfg.partitions
                t = time.monotonic()
                try:
                    producer.produce(
                        self.topic,
                        value=encode_value(self.producer_id, seq, self.cfg.value_pad),
                        partition=partition,
                        on_delivery=self._callback(seq, partition),
                    )
                except BufferError:
                    producer.poll(0.05)
                    continue
                self.history.attempts.append(Attempt(self.producer_id, seq, partition, t, t + self.give_up_after_s))
                seq += 1
                next_t += interval
                while (left := next_t - time.monotonic()) > 0:  # poll() returns early when it serves a callback
                    producer.poll(left)
                producer.poll(0)
                if time.monotonic() - next_t > 1.0:  # fell behind (a slow poll): do not burst to catch up
                    next_t = time.monotonic()
            self._finish(producer)
        except BaseException as e:  # noqa: BLE001 - reported by the runner
            self.exception = e

    def _finish(self, producer) -> None:
        """Flush (bounded); purge what is still unresolved, so it is reported as failed."""
        timeout = self.give_up_after_s + 2 if self.probe else self.cfg.flush_timeout_s
        remaining = producer.flush(timeout)
        if remaining:
            self.unflushed += remaining
            producer.purge(in_queue=True, in_flight=True, blocking=False)
            producer.flush(5)


def describe_error(err) -> str:
    return (f"{err.name()} ({err.str()})"
            + "".join(f" {flag}" for flag, on in (("fatal", err.fatal()), ("retriable", err.retriable()),
                                                   ("abortable", err.txn_requires_abort())) if on))


class TxnWorker(ClientSettings, threading.Thread):
    """One transactional producer (transactional.id chaos-txn-<seed>-<i>):
    transactions of a few records on random partitions, a seeded fraction
    aborted on purpose. Every transaction is recorded (history.txns) before
    its first record is produced, with its outcome as the client sees it:

    - commit_transaction returns: COMMITTED;
    - it raises a retriable error (e.g. _TIMED_OUT): called again, for up to
      txn_give_up_s; then the producer is recreated: UNKNOWN;
    - it raises an error with txn_requires_abort(): abort_transaction, and
      ABORTED once that returns (UNKNOWN if the abort fails in turn);
    - it raises a fatal error (e.g. fenced after the coordinator timed the
      transaction out): the producer is recreated with the same
      transactional.id and init_transactions (which aborts whatever the old
      one left open): UNKNOWN;
    - begin_transaction or produce raise before any commit was asked for:
      aborted (abort_transaction, or the producer is recreated): ABORTED,
      since no EndTxn(commit) was ever sent.

    When the run stops, the transaction in progress is finished (committed or
    aborted as planned); a producer that would have to be recreated after the
    stop is not, and what it left open is for the broker to time out. Then
    producer 0 (with txn_abandon_at_end) begins one more transaction, flushes
    its records and leaves it open: ABORTED (nothing can commit it), ended by
    the coordinator after transaction.timeout.ms."""

    def __init__(self, producer_id: int, bootstrap: str, topic: str, cfg: ChaosConfig, history: History,
                 stop: threading.Event, logger: logging.Logger):
        super().__init__(name=f"chaos-txn-producer-{producer_id}", daemon=True)
        self.producer_id = producer_id
        self.transactional_id = cfg.transactional_id(producer_id)
        self.bootstrap = bootstrap
        self.topic = topic
        self.cfg = cfg
        self.history = history
        self.stop_event = stop
        self.logger = logger
        self.rng = random.Random(f"{cfg.seed}:txn:{producer_id}")
        self.txn_no = 0
        self.recreated = 0
        self.commit_retries = 0
        self.exception: BaseException | None = None
        self._fatal = False
        self.abandoned = None  # the producer holding the transaction left open at the end (kept alive)

    def _config(self) -> dict:
        return {
            "bootstrap.servers": self.bootstrap,
            "transactional.id": self.transactional_id,
            "transaction.timeout.ms": self.cfg.transaction_timeout_ms,  # message.timeout.ms is derived from it
            "linger.ms": 5,
            "request.timeout.ms": self.cfg.request_timeout_ms,
            **self._client_settings(),
        }

    def _note(self, text: str) -> None:
        self.history.txn_events.append((time.monotonic(), self.producer_id, text))
        self.logger.warning("txn producer %s: %s", self.producer_id, text)

    def _callback(self, txn: int, index: int, partition: int):
        pid, history = self.producer_id, self.history

        def on_delivery(err, msg):
            now = time.monotonic()
            if err is None:
                history.txn_acks.append(TxnAck(pid, txn, index, partition, msg.offset(), now))
            else:
                history.txn_failures.append((now, pid, txn, index, partition, err.str()))

        return on_delivery

    # -- the producer's life ---------------------------------------------------
    def _ready_producer(self):
        """A new producer with init_transactions done (retried; a fatal or
        unexpected error makes a new producer). None if the run stops first."""
        from confluent_kafka import KafkaException, Producer

        while True:
            producer = Producer(self._config())
            self._fatal = False
            while True:
                try:
                    producer.init_transactions(self.cfg.txn_call_timeout_s)
                    return producer
                except KafkaException as e:
                    err = e.args[0]
                    self._note(f"init_transactions: {describe_error(err)}")
                    if self.stop_event.is_set():
                        return None
                    if err.retriable() and not err.fatal():
                        continue
                    break
            self._discard(producer)

    def _discard(self, producer) -> None:
        try:
            producer.purge(in_queue=True, in_flight=True, blocking=False)
            producer.poll(0)
        except Exception:  # noqa: BLE001 - a fatal producer may refuse; it is dropped anyway
            pass

    def _recreate(self, producer, why: str):
        self._discard(producer)
        if self.stop_event.is_set():
            self._note(f"{why}; the run is stopping: not recreated (the broker times out what it left open)")
            return None
        self.recreated += 1
        self._note(f"{why}; producer recreated with the same transactional.id")
        return self._ready_producer()

    def run(self) -> None:
        try:
            producer = self._ready_producer()
            while producer is not None and not self.stop_event.is_set():
                producer = self._one_transaction(producer)
                if producer is not None:
                    producer.poll(self.cfg.txn_interval_s)
            if producer is not None and self.producer_id == 0 and self.cfg.txn_abandon_at_end:
                self._abandon(producer)
        except BaseException as e:  # noqa: BLE001 - reported by the runner
            self.exception = e

    def _abandon(self, producer) -> None:
        from confluent_kafka import KafkaException

        parts = [p % self.cfg.partitions for p in range(self.cfg.partitions)]  # one record on every partition
        txn = Txn(self.producer_id, self.txn_no, tuple(parts), ABORTED, t_begin=time.monotonic(),
                  how="left open at the end (only the coordinator's timeout ends it)")
        self.txn_no += 1
        self.history.txns.append(txn)
        try:
            producer.begin_transaction()
            for i, partition in enumerate(parts):
                producer.produce(self.topic, value=encode_txn_value(self.producer_id, txn.txn, i, self.cfg.value_pad),
                                 partition=partition, on_delivery=self._callback(txn.txn, i, partition))
            left = producer.flush(self.cfg.txn_call_timeout_s)
            txn.how += f"; {len(parts) - left} of {len(parts)} records delivered"
        except KafkaException as e:
            txn.how += f"; {describe_error(e.args[0])}"
        txn.t_end = time.monotonic()
        self._note(f"txn {txn.txn}: {txn.how}")
        self.abandoned = producer

    def _one_transaction(self, producer):
        from confluent_kafka import KafkaException

        cfg = self.cfg
        parts = [self.rng.randrange(cfg.partitions) for _ in range(self.rng.randint(*cfg.txn_records))]
        abort_on_purpose = self.rng.random() < cfg.txn_abort_fraction
        # most aborts on purpose wait for the records to be in the log first (the others abort with the
        # records still queued, and librdkafka purges them): aborted records the broker must hide
        flush_first = self.rng.random() < 0.75
        txn = Txn(self.producer_id, self.txn_no, tuple(parts), UNKNOWN, t_begin=time.monotonic())
        self.txn_no += 1
        self.history.txns.append(txn)
        produced = 0
        try:
            producer.begin_transaction()
            for i, partition in enumerate(parts):
                value = encode_txn_value(self.producer_id, txn.txn, i, cfg.value_pad)
                while True:
                    try:
                        producer.produce(self.topic, value=value, partition=partition,
                                         on_delivery=self._callback(txn.txn, i, partition))
                        break
                    except BufferError:
                        producer.poll(0.05)
                produced = i + 1
                producer.poll(0)
        except (KafkaException, SystemError) as e:  # SystemError: a fatal error raised in a delivery callback
            txn.partitions = tuple(parts[:produced])
            what = describe_error(e.args[0]) if isinstance(e, KafkaException) else repr(e)
            if self._fatal or (isinstance(e, KafkaException) and e.args[0].fatal()):
                txn.outcome, txn.t_end, txn.how = ABORTED, time.monotonic(), f"produce: {what}; never committed"
                return self._recreate(producer, f"txn {txn.txn}: produce: {what}")
            return self._abort(producer, txn, f"produce: {what}")
        if abort_on_purpose:
            if flush_first:
                left = producer.flush(self.cfg.txn_call_timeout_s)
                return self._abort(producer, txn, "aborted on purpose after a flush"
                                   + (f" ({left} records not delivered)" if left else ""))
            return self._abort(producer, txn, "aborted on purpose")
        return self._commit(producer, txn)

    def _abort(self, producer, txn: Txn, why: str, commit_called: bool = False):
        from confluent_kafka import KafkaException

        txn.how = why
        deadline = time.monotonic() + self.cfg.txn_give_up_s
        tries = 0
        while True:
            try:
                producer.abort_transaction(self.cfg.txn_call_timeout_s)
                txn.outcome, txn.t_end = ABORTED, time.monotonic()
                if tries:
                    txn.how += f"; abort retried {tries}x"
                return producer
            except KafkaException as e:
                err = e.args[0]
                tries += 1
                if err.retriable() and not err.fatal() and time.monotonic() < deadline:
                    continue
                # a commit was asked for and the abort could not confirm otherwise: the client cannot tell
                txn.outcome = UNKNOWN if commit_called else ABORTED
                txn.t_end = time.monotonic()
                txn.how += f"; abort_transaction: {describe_error(err)}"
                return self._recreate(producer, f"txn {txn.txn}: abort_transaction: {describe_error(err)}")

    def _commit(self, producer, txn: Txn):
        from confluent_kafka import KafkaException

        txn.t_commit_called = time.monotonic()
        deadline = txn.t_commit_called + self.cfg.txn_give_up_s
        errors: list[str] = []
        while True:
            try:
                producer.commit_transaction(self.cfg.txn_call_timeout_s)
                txn.outcome, txn.t_end = COMMITTED, time.monotonic()
                if errors:
                    txn.how = f"commit retried after {', '.join(errors)}"
                return producer
            except (KafkaException, SystemError) as e:
                if isinstance(e, SystemError):
                    what, fatal, abortable, retriable = repr(e), True, False, False
                else:
                    err = e.args[0]
                    what, fatal, abortable, retriable = (describe_error(err), err.fatal(),
                                                         err.txn_requires_abort(), err.retriable())
                errors.append(what)
                if fatal:
                    txn.outcome, txn.t_end, txn.how = UNKNOWN, time.monotonic(), f"commit: {', '.join(errors)}"
                    return self._recreate(producer, f"txn {txn.txn}: commit_transaction: {what}")
                if abortable:
                    self._note(f"txn {txn.txn}: commit_transaction: {what}; aborting")
                    return self._abort(producer, txn, f"commit: {', '.join(errors)}; aborted", commit_called=True)
                if retriable and time.monotonic() < deadline:
                    self.commit_retries += 1
                    continue
                txn.outcome, txn.t_end = UNKNOWN, time.monotonic()
                txn.how = f"commit: {', '.join(errors)}; gave up"
                return self._recreate(producer, f"txn {txn.txn}: commit_transaction: gave up after {what}")


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str
    partition: int = 0  # kill_leader: whose leader
    nodes: tuple[int, ...] = ()  # pause/isolate/kill_two targets; rolling_restart order
    down_s: float = 0.0
    producer: int = 0  # kill_coordinator: the coordinator of this transactional producer's id


def make_schedule(rng: random.Random, cfg: ChaosConfig, node_ids: list[int]) -> list[Fault]:
    """Short form: every kind once, in a seeded order. Long form: the same
    rounds repeated (each round shuffled) - enough for any duration; the
    runner stops when the time is up."""
    rounds = 1 if cfg.duration_s is None else max(1, int(cfg.duration_s // 20) + 1)
    faults = []
    for _ in range(rounds):
        kinds = list(cfg.kinds)
        rng.shuffle(kinds)
        for kind in kinds:
            down = round(rng.uniform(*cfg.down_s), 2)
            if kind == "kill_leader":
                faults.append(Fault(kind, partition=rng.randrange(cfg.partitions), down_s=down))
            elif kind in ("pause", "isolate"):
                faults.append(Fault(kind, nodes=(rng.choice(node_ids),), down_s=down))
            elif kind == "kill_two":
                hold = max(down, cfg.kill_two_min_s)
                faults.append(Fault(kind, nodes=tuple(rng.sample(node_ids, 2)), down_s=round(hold, 2)))
            elif kind == "rolling_restart":
                order = list(node_ids)
                rng.shuffle(order)
                faults.append(Fault(kind, nodes=tuple(order)))
            elif kind == "kill_coordinator":
                faults.append(Fault(kind, producer=rng.randrange(max(1, cfg.txn_producers)), down_s=down))
            else:
                raise ValueError(f"unknown fault kind {kind}")
    return faults


class FaultRunner:
    def __init__(self, cluster: Cluster, topic: str, cfg: ChaosConfig, t0: float, say,
                 history: History | None = None, logger: logging.Logger | None = None):
        self.history = history or History()
        self.probes = not cfg.transactions  # the probes write plain records: not in the transactional topic
        self.logger = logger or logging.getLogger("chaos")
        self.probes_run = 0
        self.t_stop: float | None = None
        self.cluster = cluster
        self.topic = topic
        self.cfg = cfg
        self.t0 = t0
        self.say = say
        self.events: list[tuple[float, str]] = []
        self.notes: list[str] = []  # liveness findings (not safety)
        self.windows: list[Window] = []
        self._open: float | None = None
        self._open_what = ""
        self.isolation_emulated = not cluster.can_isolate()

    def log(self, text: str, t: float | None = None) -> None:
        t = time.monotonic() if t is None else t
        self.events.append((t, text))
        self.say(f"[{t - self.t0:7.2f}s] {text}")

    def _act(self, what: str, fn, n: int) -> None:
        """Run one cluster action and update the under-min.insync windows."""
        t = time.monotonic()
        fn(n)
        self.log(f"{what} node {n}", t)
        alive = len(self.cluster.alive())
        if alive < self.cfg.min_insync and self._open is None:
            self._open, self._open_what = t, f"{what} node {n} -> {alive} alive"
            self.log(f"fewer than min.insync.replicas={self.cfg.min_insync} brokers alive ({alive})", t)
        elif alive >= self.cfg.min_insync and self._open is not None:
            self.windows.append(Window(self._open, t, self._open_what))
            self.log(f"back to {alive} brokers alive", t)
            self._open = None

    def _start(self, n: int) -> None:
        self.cluster.start(n, timeout_s=30.0)

    def _sleep(self, s: float) -> None:
        time.sleep(max(0.0, s))

    def settle(self, after: str) -> bool:
        """Until every node runs and every partition has an ISR of 3 (and all
        nodes agree on it)."""
        t = time.monotonic()
        deadline = t + self.cfg.settle_timeout_s
        try:
            for n in self.cluster.node_ids:
                left = max(0.5, deadline - time.monotonic())
                self.cluster.wait_isr(self.topic, len(self.cluster.node_ids), left, node=n)
        except ClusterError as e:
            self.notes.append(f"after {after}: {e}")
            self.log(f"NOT settled after {after}: {e}")
            return False
        self.log(f"settled (ISR 3 everywhere) in {time.monotonic() - t:.2f}s")
        return True

    def _kill_and_restart(self, node: int, down_s: float) -> None:
        self._act("kill -9", self.cluster.kill, node)
        self._sleep(down_s)
        self._act("start", self._start, node)

    def run(self, fault: Fault) -> None:
        c = self.cluster
        if fault.kind == "kill_leader":
            leader = c.leader_of(self.topic, fault.partition)
            if leader not in c.alive():
                self.notes.append(f"kill_leader: partition {fault.partition} had no live leader ({leader})")
                leader = c.alive()[0]
            self.log(f"fault kill_leader: partition {fault.partition}, leader {leader}")
            self._kill_and_restart(leader, fault.down_s)
        elif fault.kind == "kill_coordinator":
            txid = self.cfg.transactional_id(fault.producer)
            t = time.monotonic()
            node = self.coordinator_of(txid)
            while node not in c.alive() and time.monotonic() - t < self.cfg.settle_timeout_s:
                time.sleep(0.2)  # e.g. just after kill_two: the coordinators are still being elected and loaded
                node = self.coordinator_of(txid)
            if time.monotonic() - t > 1.0:
                self.log(f"FindCoordinator({txid}) answered after {time.monotonic() - t:.1f}s")
            if node not in c.alive():
                self.notes.append(f"kill_coordinator: no live coordinator found for {txid} ({node})")
                node = c.alive()[0]
            self.log(f"fault kill_coordinator: transactional.id {txid}, coordinator node {node}")
            self._kill_and_restart(node, fault.down_s)
        elif fault.kind == "pause":
            n = fault.nodes[0]
            self.log(f"fault pause: node {n} for {fault.down_s}s")
            self._act("SIGSTOP", c.pause, n)
            self._sleep(fault.down_s)
            self._act("SIGCONT", c.resume, n)
        elif fault.kind == "isolate":
            n = fault.nodes[0]
            if self.isolation_emulated:
                self.log(f"fault isolate (emulated by SIGSTOP: no network namespaces): node {n} for {fault.down_s}s")
                self._act("SIGSTOP", c.pause, n)
                self._sleep(fault.down_s)
                self._act("SIGCONT", c.resume, n)
            else:
                self.log(f"fault isolate: node {n} for {fault.down_s}s")
                self._act("isolate", c.isolate, n)
                self._sleep(fault.down_s)
                self._act("heal", c.heal, n)
        elif fault.kind == "kill_two":
            a, b = fault.nodes
            self.log(f"fault kill_two: nodes {a} and {b} for {fault.down_s}s")
            self._act("kill -9", c.kill, a)
            t_open = time.monotonic()
            self._act("kill -9", c.kill, b)
            self._sleep(t_open + self.cfg.grace_s - time.monotonic())
            self.run_probes(t_open + fault.down_s)
            self._sleep(t_open + fault.down_s - time.monotonic())
            # the restarts go together: the controller quorum needs both back
            t = time.monotonic()
            for n in (a, b):
                c.broker(n).launch()
                c._event("start", n)
            self._act("started nodes", lambda n: None, a)
            for n in (a, b):
                c.broker(n).wait_ready(30.0, t)
        elif fault.kind == "rolling_restart":
            self.log(f"fault rolling_restart: order {list(fault.nodes)}")
            for i, n in enumerate(fault.nodes):
                t = time.monotonic()
                outcome: dict = {}

                def controlled_stop(n):
                    try:
                        outcome["code"] = c.stop(n, timeout_s=30.0)
                    except RuntimeError as e:  # did not exit in time: killed by the harness
                        outcome["error"] = str(e).splitlines()[0]

                self._act("SIGTERM (controlled shutdown) of", controlled_stop, n)
                took = time.monotonic() - t
                if "error" in outcome:
                    self.notes.append(f"rolling_restart: node {n}: {outcome['error']}")
                self.log(f"node {n} exited (code {outcome.get('code')}) {took:.2f}s after SIGTERM")
                if outcome.get("code") not in (0, None):
                    self.notes.append(f"rolling_restart: node {n} exited with code {outcome.get('code')} after SIGTERM")
                self._act("start", self._start, n)
                if i < len(fault.nodes) - 1:
                    self.settle(f"restart of node {n}")
        else:
            raise ValueError(fault.kind)

    def coordinator_of(self, transactional_id: str) -> int:
        """The node FindCoordinator(TRANSACTION) names, asked of the live nodes (-1 if none answers)."""
        from txn_wire import find_transaction_coordinator

        for n in self.cluster.alive():
            b = self.cluster.broker(n)
            try:
                found = find_transaction_coordinator(b.host, b.port, transactional_id)
            except Exception:  # noqa: BLE001 - the next node may answer
                continue
            if found.error_code == 0:
                return found.node_id
        return -1

    def run_probes(self, window_end: float) -> None:
        """Probe producers write to every partition until their clients
        would still give up before window_end; all must be refused."""
        if not self.probes:
            self.log("no probes (transactional workload)")
            return
        span = window_end - time.monotonic() - self.cfg.probe_deadline_s - 0.5
        if span < 0.3:
            self.notes.append("kill_two: window too short for probes")
            return
        self.probes_run += 1
        stop = threading.Event()
        probe = ProducerWorker(100 + self.probes_run, self.cluster.bootstrap, self.topic, self.cfg, self.history,
                               stop, self.logger, probe=True)
        self.log(f"probe producer {probe.producer_id}: producing for {span:.1f}s with only one broker alive")
        probe.start()
        time.sleep(min(span, self.cfg.probe_span_s))
        stop.set()
        probe.join(self.cfg.probe_deadline_s + 10)
        if probe.exception is not None:
            self.notes.append(f"probe producer failed: {probe.exception!r}")
        mine = [a for a in self.history.attempts if a.producer == probe.producer_id]
        acked = sum(1 for a in self.history.acks if a.producer == probe.producer_id)
        self.log(f"probe producer {probe.producer_id}: {len(mine)} produced, {acked} acknowledged")

    def close(self) -> None:
        if self._open is not None:
            self.windows.append(Window(self._open, time.monotonic(), self._open_what))
            self._open = None


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------
@dataclass
class ChaosResult:
    report: Report | TxnReport  # TxnReport for the transactional workload
    cfg: ChaosConfig
    schedule: list[Fault]
    events: list[tuple[float, str]]
    notes: list[str]
    windows: list[Window]
    t0: float
    wall_s: float
    recovered: bool
    network: str
    isolation_emulated: bool
    acks_after_faults: int  # acks after the last fault had healed: the cluster serves again
    probes_produced: int = 0  # records written while only one broker was alive (all must fail)
    probe_outcomes: dict = field(default_factory=dict)  # error (or "ACKNOWLEDGED") -> count
    lso_wait_s: float | None = None  # transactional workload: how long until LSO = high watermark everywhere
    client_stats: list = field(default_factory=list)  # transactional workload: per producer, what the client did

    def format(self) -> str:
        lines = [
            f"chaos seed {self.cfg.seed}: {len(self.schedule)} faults scheduled "
            f"({', '.join(f.kind for f in self.schedule)}), wall time {self.wall_s:.1f}s, network {self.network}"
            + (" (isolation emulated by SIGSTOP)" if self.isolation_emulated else ""),
            "windows under min.insync.replicas: "
            + (", ".join(f"{w.start - self.t0:.1f}..{w.end - self.t0:.1f}s ({w.what})" for w in self.windows) or "none"),
            self.report.format(self.t0),
        ]
        if self.cfg.transactions:
            lines += [
                f"recovered at the end (ISR 3 everywhere): {'yes' if self.recovered else 'NO'}; "
                f"commits after the last fault healed: {self.acks_after_faults}; "
                + (f"LSO = high watermark everywhere {self.lso_wait_s:.1f}s after the producers stopped"
                   if self.lso_wait_s is not None else
                   f"LSO still below the high watermark {self.cfg.lso_deadline_s:.0f}s after the producers stopped"),
                *self.client_stats,
            ]
        else:
            lines += [
                f"recovered at the end (ISR 3 everywhere): {'yes' if self.recovered else 'NO'}; "
                f"acks after the last fault healed: {self.acks_after_faults}",
                f"probes while only one broker was alive: {self.probes_produced} produced; outcomes: "
                + (", ".join(f"{n} x {e}" for e, n in sorted(self.probe_outcomes.items(), key=lambda kv: -kv[1]))
                   or "none"),
            ]
        if self.notes:
            lines.append("liveness notes:")
            lines += [f"    {n}" for n in self.notes]
        return "\n".join(lines)


def probe_outcomes(history: History) -> dict:
    out: dict[str, int] = {}
    for a in history.acks:
        if a.producer >= 100:
            out["ACKNOWLEDGED"] = out.get("ACKNOWLEDGED", 0) + 1
    for f in history.failures:
        if f.producer >= 100:
            out[f.error] = out.get(f.error, 0) + 1
    return out


def dump_history(path: Path, history: History, log: dict, runner: "FaultRunner", t0: float) -> None:
    """Everything the checker saw, for a post-mortem (times relative to the start of producing)."""
    import json

    def rel(t: float) -> float:
        return round(t - t0, 4)

    data = {
        "attempts": [[a.producer, a.seq, a.partition, rel(a.t_produce), rel(a.give_up_by)] for a in history.attempts],
        "acks": [[a.producer, a.seq, a.partition, a.offset, rel(a.t_ack)] for a in history.acks],
        "failures": [[f.producer, f.seq, f.partition, rel(f.t_fail), f.error] for f in history.failures],
        "client_errors": [[rel(t), p, e] for t, p, e in history.client_errors],
        "log": {str(p): [[o, v.decode(errors="replace") if v else None] for o, v in recs] for p, recs in log.items()},
        "events": [[rel(t), e] for t, e in runner.events],
        "windows": [[rel(w.start), rel(w.end), w.what] for w in runner.windows],
    }
    data["grace_s"] = runner.cfg.grace_s
    data["producing"] = [0.0, rel(runner.t_stop)] if runner.t_stop else None
    path.write_text(json.dumps(data))


def dump_txn_history(path: Path, history: History, committed: dict, uncommitted: dict, ends: dict,
                     runner: "FaultRunner", t0: float, t_stop: float) -> None:
    """The transactional workload's history, the logs read back and the end offsets, for a post-mortem
    (times relative to the start of producing); `--recheck` runs the checker over it again."""
    import json

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t0, 4)

    def text(log: dict) -> dict:
        return {str(p): [[o, v.decode(errors="replace") if v else None] for o, v in recs] for p, recs in log.items()}

    data = {
        "transactions": [[t.producer, t.txn, list(t.partitions), t.outcome, rel(t.t_begin), rel(t.t_end), t.how,
                          rel(t.t_commit_called)] for t in history.txns],
        "txn_acks": [[a.producer, a.txn, a.index, a.partition, a.offset, rel(a.t_ack)] for a in history.txn_acks],
        "txn_failures": [[rel(f[0]), *f[1:]] for f in history.txn_failures],
        "txn_events": [[rel(t), p, e] for t, p, e in history.txn_events],
        "client_errors": [[rel(t), p, e] for t, p, e in history.client_errors],
        "committed_log": text(committed),
        "uncommitted_log": text(uncommitted),
        "ends": {str(p): list(v) for p, v in ends.items()},
        "events": [[rel(t), e] for t, e in runner.events],
        "windows": [[rel(w.start), rel(w.end), w.what] for w in runner.windows],
        "producing": [0.0, rel(t_stop)],
    }
    path.write_text(json.dumps(data))


def recheck(path: Path) -> Report | TxnReport:
    """The checker over a history.json written by an earlier run (after a checker change, say)."""
    import json

    d = json.loads(Path(path).read_text())
    if "transactions" in d:
        txns = [Txn(t[0], t[1], tuple(t[2]), t[3], t[4], t[5], t[6], t[7]) for t in d["transactions"]]
        acks = [TxnAck(*a) for a in d["txn_acks"]]

        def log(name: str) -> dict:
            return {int(p): [(o, v.encode() if v is not None else None) for o, v in recs]
                    for p, recs in d[name].items()}

        ends = {int(p): tuple(v) for p, v in d["ends"].items()}
        return check_transactions(txns, acks, log("committed_log"), log("uncommitted_log"), ends,
                                  producing=tuple(d["producing"]))
    attempts = [Attempt(a[0], a[1], a[2], a[3], a[4] if len(a) > 4 else float("inf")) for a in d["attempts"]]
    acks = [Ack(*a) for a in d["acks"]]
    failures = [Failure(*f) for f in d["failures"]]
    log = {int(p): [(o, v.encode() if v is not None else None) for o, v in recs] for p, recs in d["log"].items()}
    windows = [Window(*w) for w in d["windows"]]
    producing = tuple(d["producing"]) if d.get("producing") else None
    return check(attempts, acks, failures, log, windows=windows, grace_s=d.get("grace_s", 1.0), producing=producing)


def read_everything(
    cluster: Cluster, topic: str, partitions: int, timeout_s: float = 60.0
) -> dict[int, list[tuple[int, bytes | None]]]:
    from harness.readback import read_partition

    return {
        p: [(r.offset, r.value) for r in read_partition(cluster.bootstrap, topic, p, timeout_s=timeout_s)]
        for p in range(partitions)
    }


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    """Per partition (last stable offset, high watermark): ListOffsets(latest) with a read_committed
    and a read_uncommitted consumer (librdkafka's get_watermark_offsets answers the LSO for the former)."""
    from confluent_kafka import TopicPartition
    from harness.readback import consumer

    rc = consumer(bootstrap, **{"isolation.level": "read_committed"})
    ru = consumer(bootstrap, **{"isolation.level": "read_uncommitted"})
    try:
        out = {}
        for p in range(partitions):
            tp = TopicPartition(topic, p)
            out[p] = (rc.get_watermark_offsets(tp, timeout=5.0, cached=False)[1],
                      ru.get_watermark_offsets(tp, timeout=5.0, cached=False)[1])
        return out
    finally:
        rc.close()
        ru.close()


def wait_stable(bootstrap: str, topic: str, partitions: int, timeout_s: float
                ) -> tuple[dict[int, tuple[int, int]], float | None]:
    """Until every partition's LSO equals its high watermark (nothing left open). Returns the last
    end offsets seen and how long it took (None: not within timeout_s)."""
    t = time.monotonic()
    ends: dict[int, tuple[int, int]] = {}
    while True:
        try:
            ends = end_offsets(bootstrap, topic, partitions)
            if all(lso == hw for lso, hw in ends.values()):
                return ends, time.monotonic() - t
        except Exception:  # noqa: BLE001 - a ListOffsets that failed: ask again
            pass
        if time.monotonic() - t > timeout_s:
            return ends, None
        time.sleep(0.5)


def read_isolated(bootstrap: str, topic: str, ends: dict[int, int], isolation: str, timeout_s: float
                  ) -> tuple[dict[int, list[tuple[int, bytes | None]]], dict[int, int]]:
    """Every record a consumer with this isolation level gets, per partition from offset 0 until it reports
    the end of the partition at or past ends[p]. Returns the records and the partitions it did not read to
    their end within timeout_s (partition -> the offset it got to)."""
    from confluent_kafka import KafkaError, TopicPartition
    from harness.readback import consumer

    out: dict[int, list[tuple[int, bytes | None]]] = {p: [] for p in ends}
    position = dict.fromkeys(ends, 0)
    pending = {p for p, end in ends.items() if end > 0}
    if not pending:
        return out, {}
    c = consumer(bootstrap, **{"isolation.level": isolation, "fetch.wait.max.ms": 100,
                               "group.id": f"chaos-readback-{isolation}"})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in sorted(pending)])
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for msg in c.consume(num_messages=1000, timeout=0.2):
                err, p = msg.error(), msg.partition()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        position[p] = max(position[p], msg.offset())
                        if msg.offset() >= ends[p]:
                            pending.discard(p)
                        continue
                    raise RuntimeError(f"{isolation} consumer error: {err}")
                out[p].append((msg.offset(), msg.value()))
                position[p] = max(position[p], msg.offset() + 1)
        return out, {p: position[p] for p in pending}
    finally:
        c.close()


def txn_diagnostics(cluster: Cluster, cfg: ChaosConfig, runner: "FaultRunner") -> list[str]:
    """What the coordinators say about the workload's transactional ids (DescribeTransactions) and which
    transactions each node lists as open (ListTransactions): evidence for a hanging transaction."""
    from txn_wire import describe_transactions, list_transactions

    lines = []
    for i in range(cfg.txn_producers):
        txid = cfg.transactional_id(i)
        node = runner.coordinator_of(txid)
        if node not in cluster.alive():
            lines.append(f"{txid}: no coordinator found ({node})")
            continue
        b = cluster.broker(node)
        try:
            for d in describe_transactions(b.host, b.port, [txid]):
                lines.append(f"{txid}: coordinator node {node}: state {d.state}, error {d.error_code}, producer id "
                             f"{d.producer_id} epoch {d.producer_epoch}, timeout {d.timeout_ms} ms, started at "
                             f"{d.start_time_ms}, partitions {d.topics}")
        except Exception as e:  # noqa: BLE001 - diagnostics only
            lines.append(f"{txid}: DescribeTransactions on node {node} failed: {e!r}")
    for n in cluster.alive():
        b = cluster.broker(n)
        try:
            listed = list_transactions(b.host, b.port, ["Ongoing", "PrepareCommit", "PrepareAbort"])
            lines.append(f"node {n}: open transactions {listed.transactions}")
        except Exception as e:  # noqa: BLE001 - diagnostics only
            lines.append(f"node {n}: ListTransactions failed: {e!r}")
    return lines


def check_txn_run(cluster: Cluster, topic: str, cfg: ChaosConfig, history: History, runner: "FaultRunner",
                  t0: float, t_stop: float, base_dir: Path) -> tuple[TxnReport, float | None]:
    """After the producers stopped and the cluster healed: wait (up to transaction.timeout.ms and two
    cleanup intervals, and a margin) for every partition's LSO to reach its high watermark, read every
    partition read_committed (to the LSO) and read_uncommitted (to the high watermark), and check."""
    runner.log(f"waiting up to {cfg.lso_deadline_s:.0f}s for LSO = high watermark on every partition")
    ends, waited = wait_stable(cluster.bootstrap, topic, cfg.partitions, cfg.lso_deadline_s)
    if waited is None:
        runner.log(f"LSO below the high watermark after {cfg.lso_deadline_s:.0f}s: {ends}")
    else:
        runner.log(f"LSO = high watermark everywhere after {waited:.1f}s: {ends}")
    runner.log("reading every partition back from offset 0, read_committed and read_uncommitted")
    committed, short_c = read_isolated(cluster.bootstrap, topic, {p: lso for p, (lso, _) in ends.items()},
                                       "read_committed", cfg.read_timeout_s)
    uncommitted, short_u = read_isolated(cluster.bootstrap, topic, {p: hw for p, (_, hw) in ends.items()},
                                         "read_uncommitted", cfg.read_timeout_s)
    for what, short in (("read_committed", short_c), ("read_uncommitted", short_u)):
        if short:
            runner.notes.append(f"{what} read did not reach the end of partitions {short} "
                                f"(ends {ends}) within {cfg.read_timeout_s:.0f}s")
    dump_txn_history(base_dir / "history.json", history, committed, uncommitted, ends, runner, t0, t_stop)
    report = check_transactions(history.txns, history.txn_acks, committed, uncommitted, ends,
                                producing=(t0, t_stop))
    if not report.ok or waited is None or short_c or short_u:
        runner.notes += txn_diagnostics(cluster, cfg, runner)
    return report, waited


def client_stats(workers: list, history: History) -> list[str]:
    lines = []
    for w in workers:
        mine = [e for e in history.txn_events if e[1] == w.producer_id]
        lines.append(f"txn producer {w.producer_id} ({w.transactional_id}): {w.txn_no} transactions, "
                     f"{w.commit_retries} commit retries, recreated {w.recreated}x, {len(mine)} client events"
                     + (f"; e.g. {mine[0][2]!r}" if mine else ""))
    failures: dict[str, int] = {}
    for f in history.txn_failures:
        failures[f[5]] = failures.get(f[5], 0) + 1
    if failures:
        lines.append("delivery failures: " + "; ".join(f"{n} x {e}" for e, n in sorted(failures.items(),
                                                                                         key=lambda kv: -kv[1])))
    return lines


def create_topic(cluster: Cluster, topic: str, cfg: ChaosConfig) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    new = NewTopic(topic, num_partitions=cfg.partitions, replication_factor=3,
                   config={"min.insync.replicas": str(cfg.min_insync)})
    admin.create_topics([new])[topic].result(30)
    for n in cluster.node_ids:
        cluster.wait_isr(topic, 3, 30.0, node=n)


def run_chaos(cfg: ChaosConfig, base_dir: Path, say=print, cluster: Cluster | None = None) -> ChaosResult:
    """Run the workload with the faults of cfg's schedule and check it. Uses
    `cluster` if given (it must be formed), else starts its own in base_dir."""
    started = time.monotonic()
    own = cluster is None
    if own:
        cluster = Cluster(base_dir / "cluster", props=cfg.broker_props, network=cfg.network)
    logger = logging.getLogger(f"chaos.librdkafka.{cfg.seed}")
    logger.propagate = False
    handler = logging.FileHandler(base_dir / "librdkafka.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if cfg.client_debug else logging.INFO)
    try:
        if own:
            took = cluster.start_all()
            say(f"cluster formed in {took:.2f}s: {cluster.bootstrap} ({cluster.network_mode})")
        topic = f"chaos-{cfg.seed}-{int(time.time())}"
        create_topic(cluster, topic, cfg)
        rng = random.Random(cfg.seed)
        schedule = make_schedule(rng, cfg, cluster.node_ids)
        history = History()
        stop = threading.Event()
        t0 = time.monotonic()
        runner = FaultRunner(cluster, topic, cfg, t0, say, history, logger)
        runner.log(f"topic {topic}: {cfg.partitions} partitions, RF 3, min.insync.replicas {cfg.min_insync}; "
                   f"schedule: {[(f.kind, f.partition if f.kind == 'kill_leader' else f.nodes, f.down_s) for f in schedule]}")
        if cfg.transactions:
            workers = [TxnWorker(i, cluster.bootstrap, topic, cfg, history, stop, logger)
                       for i in range(cfg.txn_producers)]
        else:
            workers = [ProducerWorker(i, cluster.bootstrap, topic, cfg, history, stop, logger)
                       for i in range(cfg.producers)]
        for w in workers:
            w.start()
        time.sleep(cfg.warmup_s)
        for i, fault in enumerate(schedule):
            if cfg.duration_s is not None and time.monotonic() - t0 > cfg.duration_s and i > 0:
                break
            if cfg.fault_budget_s is not None and time.monotonic() - t0 > cfg.fault_budget_s:
                runner.notes.append(
                    f"fault budget of {cfg.fault_budget_s:.0f}s used up: skipped {[f.kind for f in schedule[i:]]}"
                )
                runner.log(runner.notes[-1])
                break
            runner.run(fault)
            runner.settle(fault.kind)
            time.sleep(cfg.quiet_s)
        runner.close()
        # the cluster is whole again: some more acks prove it serves
        t_faults_done = time.monotonic()
        time.sleep(max(cfg.quiet_s, 2.0))
        stop.set()
        t_stop = time.monotonic()
        runner.t_stop = t_stop
        runner.log("producers stopping; flushing")
        for w in workers:
            w.join(2 * cfg.txn_give_up_s + 30 if cfg.transactions else cfg.flush_timeout_s + 30)
        for w in workers:
            if w.exception is not None:
                raise RuntimeError(f"producer {w.producer_id} failed: {w.exception!r}") from w.exception
            if w.is_alive():
                runner.notes.append(f"producer {w.producer_id} did not finish flushing")
            if getattr(w, "unflushed", 0):
                runner.notes.append(f"producer {w.producer_id}: {w.unflushed} records unresolved after the final flush (purged)")
            if w.recreated and not cfg.transactions:  # the transactional ones: see client_stats
                runner.notes.append(f"producer {w.producer_id} hit {w.recreated} fatal client error(s) and was recreated")
        fatal = [e for e in history.client_errors if "fatal" in e[2].lower()]
        if fatal:
            runner.notes.append(f"fatal client errors: {[(round(t - t0, 2), p, e) for t, p, e in fatal[:5]]}")
        recovered = runner.settle("the end of the run")
        if cfg.transactions:
            report, waited = check_txn_run(cluster, topic, cfg, history, runner, t0, t_stop, base_dir)
            return ChaosResult(report, cfg, schedule, runner.events, runner.notes, runner.windows, t0,
                               time.monotonic() - started, recovered, cluster.network_mode, runner.isolation_emulated,
                               sum(1 for t in history.txns if t.outcome == COMMITTED and t.t_end > t_faults_done),
                               lso_wait_s=waited, client_stats=client_stats(workers, history))
        runner.log("reading every partition back from offset 0")
        log = read_everything(cluster, topic, cfg.partitions, cfg.read_timeout_s)
        dump_history(base_dir / "history.json", history, log, runner, t0)
        report = check(
            history.attempts,
            history.acks,
            history.failures,
            log,
            windows=runner.windows,
            grace_s=cfg.grace_s,
            producing=(t0, t_stop),
        )
        return ChaosResult(report, cfg, schedule, runner.events, runner.notes, runner.windows, t0,
                           time.monotonic() - started, recovered, cluster.network_mode, runner.isolation_emulated,
                           sum(1 for a in history.acks if a.t_ack > t_faults_done),
                           sum(1 for a in history.attempts if a.producer >= 100),
                           probe_outcomes(history))
    finally:
        logger.removeHandler(handler)
        handler.close()
        if own:
            cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="odradek chaos run: faults on a 3-node cluster, then the checker")
    ap.add_argument("--seed", type=int, default=None, help="schedule seed (default: random, printed)")
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of faults (default 300)")
    ap.add_argument("--kinds", default=None,
                    help=f"comma-separated subset of {','.join(TXN_FAULT_KINDS)} (default: all; kill_coordinator "
                         "only with --transactions)")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--producers", type=int, default=3)
    ap.add_argument("--rate", type=float, default=100.0, help="records per second per producer")
    ap.add_argument("--network", choices=["auto", "netns", "loopback"], default="auto")
    ap.add_argument("--client-debug", default="", help="librdkafka debug contexts for the producers, e.g. eos,msg")
    ap.add_argument("--transactions", action="store_true",
                    help="the transactional workload: transactional producers, read_committed checks, LSO at the end")
    ap.add_argument("--txn-producers", type=int, default=2, help="transactional producers (with --transactions)")
    ap.add_argument("--abort-fraction", type=float, default=0.2, help="transactions aborted on purpose")
    ap.add_argument("--txn-timeout-ms", type=int, default=10000, help="the producers' transaction.timeout.ms")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    ap.add_argument("--recheck", metavar="HISTORY_JSON", help="only run the checker over an earlier run's history.json")
    ap.add_argument("--dir", default=None, help="where to put data and logs (default: a temporary dir)")
    args = ap.parse_args(argv)
    if args.recheck:
        report = recheck(Path(args.recheck))
        print(report.format())
        return 0 if report.ok else 1
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    kinds = args.kinds or ",".join(TXN_FAULT_KINDS if args.transactions else FAULT_KINDS)
    cfg = ChaosConfig(
        seed=seed,
        duration_s=args.duration,
        kinds=tuple(k for k in kinds.split(",") if k),
        partitions=args.partitions,
        producers=args.producers,
        rate_per_producer=args.rate,
        request_timeout_ms=4000,
        down_s=(2.0, 8.0),
        network=args.network,
        client_debug=args.client_debug,
        transactions=args.transactions,
        txn_producers=args.txn_producers,
        txn_abort_fraction=args.abort_fraction,
        transaction_timeout_ms=args.txn_timeout_ms,
        broker_props=dict(TXN_BROKER_PROPS) if args.transactions else {},
    )
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix=f"odradek-chaos-{seed}-"))
    base.mkdir(parents=True, exist_ok=True)
    mode = " --transactions" if args.transactions else ""
    print(f"chaos{mode}: seed {seed}, duration {args.duration}s, data and logs in {base}", flush=True)
    result = run_chaos(cfg, base, say=lambda s: print(s, flush=True))
    print()
    print(result.format())
    print(f"\nrerun: scripts/chaos{mode} --seed {seed} --duration {args.duration:g}   (logs: {base})")
    if result.report.ok and not args.keep and not args.dir:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0 if result.report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
