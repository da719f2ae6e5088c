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

Short form: test_chaos.py (every fault once, ~60-80 s). Long form:
`scripts/chaos [--seed N] [--duration S]`, or
`python chaos/chaos_run.py --seed N --duration S` from compat-tests/.
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

from chaos_checker import Ack, Attempt, Failure, Report, Window, check, encode_value  # noqa: E402
from harness.cluster import Cluster, ClusterError  # noqa: E402

FAULT_KINDS = ("kill_leader", "pause", "isolate", "kill_two", "rolling_restart")


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
        self.lock = threading.Lock()

    def last_ack_time(self) -> float:
        return self.acks[-1].t_ack if self.acks else 0.0


class ProducerWorker(threading.Thread):
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


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str
    partition: int = 0  # kill_leader: whose leader
    nodes: tuple[int, ...] = ()  # pause/isolate/kill_two targets; rolling_restart order
    down_s: float = 0.0


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
            else:
                raise ValueError(f"unknown fault kind {kind}")
    return faults


class FaultRunner:
    def __init__(self, cluster: Cluster, topic: str, cfg: ChaosConfig, t0: float, say,
                 history: History | None = None, logger: logging.Logger | None = None):
        self.history = history or History()
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

    def run(self, fault: Fault) -> None:
        c = self.cluster
        if fault.kind == "kill_leader":
            leader = c.leader_of(self.topic, fault.partition)
            if leader not in c.alive():
                self.notes.append(f"kill_leader: partition {fault.partition} had no live leader ({leader})")
                leader = c.alive()[0]
            self.log(f"fault kill_leader: partition {fault.partition}, leader {leader}")
            self._act("kill -9", c.kill, leader)
            self._sleep(fault.down_s)
            self._act("start", self._start, leader)
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

    def run_probes(self, window_end: float) -> None:
        """Probe producers write to every partition until their clients
        would still give up before window_end; all must be refused."""
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
    report: Report
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

    def format(self) -> str:
        lines = [
            f"chaos seed {self.cfg.seed}: {len(self.schedule)} faults scheduled "
            f"({', '.join(f.kind for f in self.schedule)}), wall time {self.wall_s:.1f}s, network {self.network}"
            + (" (isolation emulated by SIGSTOP)" if self.isolation_emulated else ""),
            "windows under min.insync.replicas: "
            + (", ".join(f"{w.start - self.t0:.1f}..{w.end - self.t0:.1f}s ({w.what})" for w in self.windows) or "none"),
            self.report.format(self.t0),
            f"recovered at the end (ISR 3 everywhere): {'yes' if self.recovered else 'NO'}; "
            f"acks after the last fault healed: {self.acks_after_faults}",
            f"probes while only one broker was alive: {self.probes_produced} produced; outcomes: "
            + (", ".join(f"{n} x {e}" for e, n in sorted(self.probe_outcomes.items(), key=lambda kv: -kv[1])) or "none"),
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


def recheck(path: Path) -> Report:
    """The checker over a history.json written by an earlier run (after a checker change, say)."""
    import json

    d = json.loads(Path(path).read_text())
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
        workers = [ProducerWorker(i, cluster.bootstrap, topic, cfg, history, stop, logger) for i in range(cfg.producers)]
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
            w.join(cfg.flush_timeout_s + 30)
        for w in workers:
            if w.exception is not None:
                raise RuntimeError(f"producer {w.producer_id} failed: {w.exception!r}") from w.exception
            if w.is_alive():
                runner.notes.append(f"producer {w.producer_id} did not finish flushing")
            if w.unflushed:
                runner.notes.append(f"producer {w.producer_id}: {w.unflushed} records unresolved after the final flush (purged)")
            if w.recreated:
                runner.notes.append(f"producer {w.producer_id} hit {w.recreated} fatal client error(s) and was recreated")
        fatal = [e for e in history.client_errors if "fatal" in e[2].lower()]
        if fatal:
            runner.notes.append(f"fatal client errors: {[(round(t - t0, 2), p, e) for t, p, e in fatal[:5]]}")
        recovered = runner.settle("the end of the run")
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
    ap.add_argument("--kinds", default=",".join(FAULT_KINDS), help=f"comma-separated subset of {','.join(FAULT_KINDS)}")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--producers", type=int, default=3)
    ap.add_argument("--rate", type=float, default=100.0, help="records per second per producer")
    ap.add_argument("--network", choices=["auto", "netns", "loopback"], default="auto")
    ap.add_argument("--client-debug", default="", help="librdkafka debug contexts for the producers, e.g. eos,msg")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    ap.add_argument("--recheck", metavar="HISTORY_JSON", help="only run the checker over an earlier run's history.json")
    ap.add_argument("--dir", default=None, help="where to put data and logs (default: a temporary dir)")
    args = ap.parse_args(argv)
    if args.recheck:
        report = recheck(Path(args.recheck))
        print(report.format())
        return 0 if report.ok else 1
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    cfg = ChaosConfig(
        seed=seed,
        duration_s=args.duration,
        kinds=tuple(k for k in args.kinds.split(",") if k),
        partitions=args.partitions,
        producers=args.producers,
        rate_per_producer=args.rate,
        request_timeout_ms=4000,
        down_s=(2.0, 8.0),
        network=args.network,
        client_debug=args.client_debug,
    )
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix=f"odradek-chaos-{seed}-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"chaos: seed {seed}, duration {args.duration}s, data and logs in {base}", flush=True)
    result = run_chaos(cfg, base, say=lambda s: print(s, flush=True))
    print()
    print(result.format())
    print(f"\nrerun: scripts/chaos --seed {seed} --duration {args.duration:g}   (logs: {base})")
    if result.report.ok and not args.keep and not args.dir:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0 if result.report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
