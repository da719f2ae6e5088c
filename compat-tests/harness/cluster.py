"""A 3-broker odradek cluster for tests: three `BrokerProcess`es that are also
the controller quorum's voters.

Every node keeps its node id, client port, controller port and data dir for
the life of the `Cluster`, so it can be killed, stopped, paused and started
again as the same broker. Faults:

- kill(n)       SIGKILL (a crash)
- stop(n)       SIGTERM (controlled shutdown: leaderships move away, then exit)
- pause(n)      SIGSTOP, resume(n) SIGCONT (a frozen process with its sockets open)
- isolate(n)    the node loses all network traffic, in both directions, with
                everybody (the other nodes and the clients); heal(n) undoes it.
                Needs network="netns": each node then runs in its own Linux
                network namespace, attached by a veth pair to a bridge in the
                test's namespace, and isolate() takes the bridge port down
                (packets are dropped silently, as in a real partition). On
                plain loopback there is no reliable way to cut one process
                off (no iptables/nftables here, and a port filter cannot
                catch a node's outgoing connections), so with
                network="loopback" isolate() raises IsolationUnsupported.

Cluster state is read with raw Metadata v7 requests (harness.wire), sent to
one chosen node, so a test can see what each broker believes: brokers,
controller id, and per partition the leader, leader epoch, replicas and ISR.

`python3 -m harness.cluster status HOST:PORT[,HOST:PORT...]` prints that
state (scripts/cluster uses it); it needs nothing outside the standard library.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `harness` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import wire  # noqa: E402
from harness.broker import BrokerProcess  # noqa: E402

# Timings short enough that a failover happens within a few seconds.
FAST_TIMINGS: dict[str, str] = {
    "broker.heartbeat.interval.ms": "250",
    "broker.session.timeout.ms": "2000",
    "replica.lag.time.max.ms": "3000",
    "replica.fetch.backoff.ms": "200",
    "default.replication.factor": "3",
    "offsets.topic.replication.factor": "3",
    "offsets.topic.num.partitions": "6",
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
}

FORM_TIMEOUT_S = 60.0


def distinct_free_ports(count: int) -> list[int]:
    """`count` different free loopback ports: the sockets stay bound until
    all are chosen (free_loopback_port() called twice may return the same
    port, since each socket is closed before the next bind)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class IsolationUnsupported(RuntimeError):
    pass


class ClusterError(AssertionError):
    """A cluster did not reach an expected state in time (a test failure)."""


# --------------------------------------------------------------------------
# Metadata v7, parsed completely
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    error_code: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline: tuple[int, ...]


@dataclass(frozen=True)
class TopicInfo:
    name: str
    error_code: int
    is_internal: bool
    partitions: dict[int, PartitionInfo]


@dataclass(frozen=True)
class ClusterMetadata:
    answered_by: int  # node id of the broker that answered (-1 if unknown)
    brokers: dict[int, tuple[str, int]]  # node id -> (host, port)
    cluster_id: str | None
    controller_id: int
    topics: dict[str, TopicInfo]

    def partition(self, topic: str, partition: int) -> PartitionInfo | None:
        t = self.topics.get(topic)
        return t.partitions.get(partition) if t else None


METADATA_VERSION = 7


def metadata_request_v7(correlation_id: int, topics: list[str] | None, allow_auto_create: bool = False) -> bytes:
    topics_field = wire.int32(-1) if topics is None else wire.array([wire.string(t) for t in topics])
    body = topics_field + wire.int8(1 if allow_auto_create else 0)
    return wire.frame(wire.request_header(wire.METADATA, METADATA_VERSION, correlation_id) + body)


def parse_metadata_v7(body: bytes, answered_by: int = -1) -> ClusterMetadata:
    r = wire.Reader(body)
    r.int32()  # throttle_time_ms
    brokers = r.array(lambda rr: (rr.int32(), rr.string(), rr.int32(), rr.nullable_string())) or []
    cluster_id = r.nullable_string()
    controller_id = r.int32()

    def ints(rr: wire.Reader) -> tuple[int, ...]:
        return tuple(rr.array(wire.Reader.int32) or [])

    def partition(rr: wire.Reader) -> PartitionInfo:
        error_code, index, leader, epoch = rr.int16(), rr.int32(), rr.int32(), rr.int32()
        return PartitionInfo(index, error_code, leader, epoch, ints(rr), ints(rr), ints(rr))

    def topic(rr: wire.Reader) -> TopicInfo:
        error_code, name, internal = rr.int16(), rr.string(), rr.boolean()
        parts = rr.array(partition) or []
        return TopicInfo(name, error_code, internal, {p.partition: p for p in parts})

    topics = r.array(topic) or []
    return ClusterMetadata(
        answered_by,
        {b[0]: (b[1], b[2]) for b in brokers},
        cluster_id,
        controller_id,
        {t.name: t for t in topics},
    )


def summarize(t: TopicInfo | None) -> str:
    """One line per topic: p<i>=leader/epoch isr[...] (errors shown)."""
    if t is None:
        return "topic absent"
    parts = [
        f"p{p.partition}: leader {p.leader} epoch {p.leader_epoch} isr {list(p.isr)}"
        + (f" error {p.error_code}" if p.error_code else "")
        for p in sorted(t.partitions.values(), key=lambda p: p.partition)
    ]
    return (f"error {t.error_code}; " if t.error_code else "") + "; ".join(parts)


def fetch_metadata(
    host: str, port: int, topics: list[str] | None = None, timeout_s: float = 3.0, answered_by: int = -1
) -> ClusterMetadata:
    """One Metadata v7 round trip to host:port (no auto-creation)."""
    with wire.Connection(host, port, timeout_s) as conn:
        cid = conn.next_correlation_id()
        conn.send(metadata_request_v7(cid, topics))
        return parse_metadata_v7(conn.recv_response(cid), answered_by)


# --------------------------------------------------------------------------
# Network namespaces, for isolate()/heal()
# --------------------------------------------------------------------------
_NETNS_STATE_DIR = Path("/run/odradek-test-netns")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class NetnsNetwork:
    """One network namespace per node, each attached with a veth pair to a
    bridge in the caller's namespace. Node n gets 10.177.K.(10+n), the bridge
    10.177.K.1; K is chosen so that concurrent clusters do not collide.
    isolate(n) sets node n's bridge port down: every packet to or from it is
    dropped silently (connections hang, as in a real partition); heal(n) sets
    it up again."""

    SUBNET = "10.177"

    def __init__(self, node_ids: list[int]):
        self.node_ids = list(node_ids)
        self.k = self._claim_index()
        self.bridge = f"odrbr{self.k}"
        self.created: list[tuple[str, str]] = []  # (kind, name) for teardown
        try:
            self._build()
        except Exception:
            self.destroy()
            raise

    @staticmethod
    def available() -> tuple[bool, str]:
        """(usable, reason): needs root, iproute2, netns, veth and bridge support."""
        if os.geteuid() != 0:
            return False, "not root"
        if shutil.which("ip") is None:
            return False, "iproute2 (ip) not installed"
        name = f"odrprobe{os.getpid()}"
        try:
            r = _ip("netns", "add", name, check=False)
            if r.returncode != 0:
                return False, f"ip netns add failed: {r.stderr.strip()}"
            r = _ip("link", "add", f"{name[:9]}b", "type", "bridge", check=False)
            if r.returncode != 0:
                return False, f"no bridge support: {r.stderr.strip()}"
            _ip("link", "del", f"{name[:9]}b", check=False)
            return True, "network namespaces"
        finally:
            _ip("netns", "del", name, check=False)

    def _claim_index(self) -> int:
        _NETNS_STATE_DIR.mkdir(parents=True, exist_ok=True)
        self._sweep_stale()
        candidates = list(range(1, 250))
        random.Random(os.getpid() ^ time.monotonic_ns()).shuffle(candidates)
        for k in candidates:
            claim = _NETNS_STATE_DIR / str(k)
            try:
                fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                continue
            if _ip("link", "show", f"odrbr{k}", check=False).returncode == 0:
                os.close(fd)  # a leftover we do not own; leave it alone
                continue
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            return k
        raise RuntimeError("no free network index for a test cluster")

    @staticmethod
    def _sweep_stale() -> None:
        """Remove the namespaces and bridges of clusters whose creating
        process is gone (a test run that was killed)."""
        for claim in _NETNS_STATE_DIR.iterdir():
            try:
                pid = int(claim.read_text() or "0")
            except (ValueError, OSError):
                continue
            if pid and Path(f"/proc/{pid}").exists():
                continue
            k = claim.name
            for line in _ip("netns", "list", check=False).stdout.splitlines():
                ns = line.split()[0] if line.split() else ""
                if ns.startswith(f"odr{k}-n"):
                    _ip("netns", "del", ns, check=False)
            _ip("link", "del", f"odrbr{k}", check=False)
            claim.unlink(missing_ok=True)

    def ns(self, n: int) -> str:
        return f"odr{self.k}-n{n}"

    def host(self, n: int) -> str:
        return f"{self.SUBNET}.{self.k}.{10 + n}"

    def host_veth(self, n: int) -> str:
        return f"odr{self.k}h{n}"

    def prefix(self, n: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(n)]

    def _build(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge", "forward_delay", "0")
        self.created.append(("link", self.bridge))
        _ip("addr", "add", f"{self.SUBNET}.{self.k}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for n in self.node_ids:
            ns, hv, nv = self.ns(n), self.host_veth(n), f"odr{self.k}n{n}"
            _ip("netns", "add", ns)
            self.created.append(("netns", ns))
            _ip("link", "add", hv, "type", "veth", "peer", "name", nv)
            self.created.append(("veth", hv))
            _ip("link", "set", nv, "netns", ns)
            _ip("link", "set", hv, "master", self.bridge)
            _ip("link", "set", hv, "up")
            _ip("-n", ns, "addr", "add", f"{self.host(n)}/24", "dev", nv)
            _ip("-n", ns, "link", "set", nv, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        for n in self.node_ids:
            self._wait_reachable(n)

    def _wait_reachable(self, n: int, timeout_s: float = 10.0) -> None:
        """Until a TCP connect from here to node n's address gets an answer
        (a refusal will do): new bridge ports take a moment to forward."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection((self.host(n), 1), timeout=0.3).close()
                return
            except ConnectionRefusedError:
                return
            except OSError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"namespace of node {n} ({self.host(n)}) unreachable: {e!r}") from e
                time.sleep(0.05)

    def isolate(self, n: int) -> None:
        _ip("link", "set", self.host_veth(n), "down")

    def heal(self, n: int) -> None:
        _ip("link", "set", self.host_veth(n), "up")

    def destroy(self) -> None:
        for kind, name in reversed(self.created):
            if kind == "netns":
                _ip("netns", "del", name, check=False)
            elif kind == "veth":
                _ip("link", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)
        self.created.clear()
        (_NETNS_STATE_DIR / str(self.k)).unlink(missing_ok=True)


# --------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------
@dataclass
class ClusterEvent:
    t: float  # time.monotonic()
    action: str  # kill, stop, start, pause, resume, isolate, heal
    node: int


@dataclass
class Node:
    node_id: int
    controller_host: str
    controller_port: int
    broker: BrokerProcess
    isolated: bool = False

    @property
    def controller_address(self) -> str:
        return f"{self.controller_host}:{self.controller_port}"


class Cluster:
    """Three (by default) odradek processes forming one cluster.

    network: "loopback" (127.0.0.1, free ports; no isolate()), "netns" (one
    network namespace per node; isolate() works), or "auto" (netns when
    available, else loopback)."""

    def __init__(
        self,
        base_dir: Path,
        size: int = 3,
        props: dict[str, object] | None = None,
        dev: bool | None = None,
        network: str = "loopback",
        binary: Path | None = None,
        extra_args: list[str] | None = None,
    ):
        self.base_dir = Path(base_dir)
        self.node_ids = list(range(1, size + 1))
        self.props = {**FAST_TIMINGS, **{k: str(v) for k, v in (props or {}).items()}}
        if network == "auto":
            network = "netns" if NetnsNetwork.available()[0] else "loopback"
        if network not in ("loopback", "netns"):
            raise ValueError(f"unknown network mode {network!r}")
        self.network_mode = network
        self.net: NetnsNetwork | None = NetnsNetwork(self.node_ids) if network == "netns" else None
        self.events: list[ClusterEvent] = []
        self._lock = threading.Lock()
        self.nodes: dict[int, Node] = {}
        addresses: dict[int, tuple[str, int, int]] = {}
        ports = distinct_free_ports(2 * size) if not self.net else []
        for i, n in enumerate(self.node_ids):
            if self.net:
                addresses[n] = (self.net.host(n), 9092, 9093)
            else:
                addresses[n] = ("127.0.0.1", ports[2 * i], ports[2 * i + 1])
        voters = ",".join(f"{n}@{h}:{cp}" for n, (h, _, cp) in addresses.items())
        set_args = [a for k, v in self.props.items() for a in ("--set", f"{k}={v}")]
        for n, (host, port, cport) in addresses.items():
            args = ["--node-id", str(n), "--controller-listen", f"{host}:{cport}", "--voters", voters]
            broker = BrokerProcess(
                data_dir=self.base_dir / f"node-{n}" / "data",
                log_dir=self.base_dir / f"node-{n}" / "logs",
                port=port,
                dev=dev,
                extra_args=args + set_args + list(extra_args or []),
                binary=binary,
                host=host,
                command_prefix=self.net.prefix(n) if self.net else None,
            )
            self.nodes[n] = Node(n, host, cport, broker)

    # -- addresses and state ---------------------------------------------
    @property
    def bootstrap(self) -> str:
        return ",".join(self.nodes[n].broker.bootstrap for n in self.node_ids)

    def bootstrap_of(self, ids) -> str:
        return ",".join(self.nodes[n].broker.bootstrap for n in ids)

    def broker(self, n: int) -> BrokerProcess:
        return self.nodes[n].broker

    @property
    def brokers(self) -> list[BrokerProcess]:
        return [self.nodes[n].broker for n in self.node_ids]

    def running(self, n: int) -> bool:
        return self.nodes[n].broker.running()

    def alive(self) -> list[int]:
        """Nodes that can take part: running, not paused, not isolated."""
        return [
            n
            for n in self.node_ids
            if self.nodes[n].broker.running() and not self.nodes[n].broker.paused and not self.nodes[n].isolated
        ]

    def _event(self, action: str, n: int) -> None:
        with self._lock:
            self.events.append(ClusterEvent(time.monotonic(), action, n))

    # -- lifecycle ----------------------------------------------------------
    def start_all(self, timeout_s: float = FORM_TIMEOUT_S) -> float:
        """Start every node at once (a quorum needs a majority before anyone
        can serve), wait until each answers ApiVersions and the cluster is
        formed. Returns the seconds it took."""
        started = time.monotonic()
        for n in self.node_ids:
            self.nodes[n].broker.launch()
            self._event("start", n)
        for n in self.node_ids:
            self.nodes[n].broker.wait_ready(timeout_s, started)
        self.wait_formed(timeout_s=max(1.0, started + timeout_s - time.monotonic()))
        return time.monotonic() - started

    def start(self, n: int, timeout_s: float = 30.0, wait: bool = True) -> None:
        """Start node n again (same id, ports and data dir)."""
        b = self.nodes[n].broker
        b.launch()
        self._event("start", n)
        if wait:
            b.wait_ready(timeout_s)

    def kill(self, n: int) -> None:
        """kill -9."""
        self.nodes[n].broker.kill9()
        self._event("kill", n)

    def stop(self, n: int, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait for the exit (controlled shutdown). Returns the exit code."""
        self._event("stop", n)
        code = self.nodes[n].broker.stop(timeout_s)
        self._event("stopped", n)
        return code

    def restart(self, n: int, hard: bool = False, timeout_s: float = 30.0) -> None:
        if hard:
            self.kill(n)
        else:
            self.stop(n)
        self.start(n, timeout_s)

    def pause(self, n: int) -> None:
        self.nodes[n].broker.pause()
        self._event("pause", n)

    def resume(self, n: int) -> None:
        self.nodes[n].broker.resume()
        self._event("resume", n)

    def can_isolate(self) -> bool:
        return self.net is not None

    def isolate(self, n: int) -> None:
        if self.net is None:
            raise IsolationUnsupported(
                "isolate() needs Cluster(network='netns') (root and iproute2); on loopback use pause() instead"
            )
        self.net.isolate(n)
        self.nodes[n].isolated = True
        self._event("isolate", n)

    def heal(self, n: int) -> None:
        if self.net is not None and self.nodes[n].isolated:
            self.net.heal(n)
        self.nodes[n].isolated = False
        self._event("heal", n)

    def shutdown(self) -> None:
        """Tear down: heal, resume and kill -9 every node (the data dirs are
        the test's own; a graceful stop of a whole cluster is tested
        elsewhere), then remove the namespaces."""
        for n in self.node_ids:
            node = self.nodes[n]
            try:
                if node.isolated:
                    self.heal(n)
                node.broker.kill9()
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        if self.net is not None:
            self.net.destroy()
            self.net = None

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # -- metadata ------------------------------------------------------------
    def metadata(self, topics: list[str] | None = None, node: int | None = None, timeout_s: float = 3.0) -> ClusterMetadata:
        """Metadata as node `node` sees it; without a node, from the first
        alive node that answers."""
        candidates = [node] if node is not None else self.alive()
        last: Exception | None = None
        for n in candidates:
            b = self.nodes[n].broker
            try:
                return fetch_metadata(b.host, b.port, topics, timeout_s, answered_by=n)
            except (OSError, wire.ProtocolError) as e:
                last = e
        raise ClusterError(f"no node of {candidates} answered Metadata: {last!r}")

    def try_metadata(self, topics: list[str] | None = None, node: int | None = None) -> ClusterMetadata | None:
        try:
            return self.metadata(topics, node)
        except ClusterError:
            return None

    def partition(self, topic: str, partition: int, node: int | None = None) -> PartitionInfo | None:
        md = self.try_metadata([topic], node)
        return md.partition(topic, partition) if md else None

    def leader_of(self, topic: str, partition: int = 0, node: int | None = None) -> int:
        """The leader named by Metadata (-1 when none or unknown)."""
        p = self.partition(topic, partition, node)
        return p.leader if p and p.error_code == 0 else -1

    def controller_id(self, node: int | None = None) -> int:
        return self.metadata(None, node).controller_id

    def describe_cluster(self, timeout_s: float = 10.0):
        """DescribeCluster through confluent-kafka's AdminClient:
        (controller id, sorted node ids)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_of(self.alive() or self.node_ids)})
        result = admin.describe_cluster(request_timeout=timeout_s).result(timeout_s)
        controller = result.controller.id if result.controller is not None else -1
        return controller, sorted(n.id for n in result.nodes)

    # -- waiting --------------------------------------------------------------
    def wait_until(self, predicate, timeout_s: float, what: str, interval_s: float = 0.1):
        """Poll predicate() until it returns something truthy; returns it.
        On timeout raises ClusterError naming `what` and the last state seen."""
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            try:
                last = predicate()
            except (ClusterError, OSError, wire.ProtocolError) as e:
                last = e
                result = None
            else:
                result = last
            if result:
                return result
            if time.monotonic() >= deadline:
                raise ClusterError(f"timed out after {timeout_s:.1f}s waiting for {what}; last seen: {last!r}")
            time.sleep(interval_s)

    def wait_formed(self, timeout_s: float = FORM_TIMEOUT_S, nodes: list[int] | None = None) -> ClusterMetadata:
        """Until every alive node answers Metadata listing every alive node
        as a broker (and naming a controller)."""
        expect = set(nodes if nodes is not None else self.alive())

        def formed():
            mds = [self.metadata(None, n) for n in sorted(expect)]
            for md in mds:
                if not expect <= set(md.brokers) or md.controller_id < 0:
                    return None
            return mds[0]

        return self.wait_until(formed, timeout_s, f"a cluster of nodes {sorted(expect)}")

    def wait_partitions(
        self, topic: str, predicate, timeout_s: float, what: str, node: int | None = None
    ) -> dict[int, PartitionInfo]:
        """Until predicate(partitions: {index: PartitionInfo}) holds in the metadata of `node` (or any alive node)."""

        seen: list = []

        def check():
            md = self.metadata([topic], node)
            t = md.topics.get(topic)
            seen[:] = [f"node {md.answered_by}: {summarize(t)}"]
            if t is None or t.error_code != 0 or not t.partitions:
                return None
            return t.partitions if predicate(t.partitions) else None

        try:
            return self.wait_until(check, timeout_s, f"{topic}: {what}")
        except ClusterError as e:
            raise ClusterError(f"{e}; last metadata: {seen[0] if seen else 'none'}") from None

    def wait_isr(self, topic: str, size: int | None = None, timeout_s: float = 30.0, node: int | None = None):
        """Until every partition of topic has an ISR of `size` (default: the cluster size) and a leader."""
        size = size or len(self.node_ids)
        return self.wait_partitions(
            topic,
            lambda ps: all(p.error_code == 0 and p.leader >= 0 and len(p.isr) == size for p in ps.values()),
            timeout_s,
            f"ISR of {size} on every partition",
            node,
        )

    def wait_new_leader(
        self, topic: str, partition: int, old_leader: int, timeout_s: float = 15.0, node: int | None = None
    ) -> PartitionInfo:
        """Until Metadata names a leader other than old_leader (and not -1)."""

        def check():
            p = self.partition(topic, partition, node)
            return p if p and p.error_code == 0 and p.leader >= 0 and p.leader != old_leader else None

        return self.wait_until(check, timeout_s, f"{topic}[{partition}] to get a leader other than {old_leader}")

    # -- diagnostics -------------------------------------------------------------
    def log_tails(self, lines: int = 60) -> list[tuple[str, str]]:
        return [(f"node {n} ({self.nodes[n].broker.log_path})", self.nodes[n].broker.log_tail(lines)) for n in self.node_ids]

    def describe(self) -> str:
        out = [f"cluster {self.bootstrap} ({self.network_mode})"]
        for title, tail in self.log_tails(40):
            out.append(f"--- {title}\n{tail}")
        return "\n".join(out)


def detect_cluster_support(binary: Path | None = None) -> tuple[bool, str]:
    """Whether the broker binary accepts the cluster flags (--voters)."""
    from harness.broker import broker_binary

    binary = Path(binary) if binary else broker_binary()
    if not binary.exists():
        return False, f"{binary} does not exist"
    out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=30)
    if "--voters" not in out.stdout:
        return False, f"{binary} has no --voters flag (clustering not implemented in this build)"
    return True, "ok"


# --------------------------------------------------------------------------
# Command line, for scripts/cluster: status of a running cluster
# --------------------------------------------------------------------------
def _format_status(bootstrap: str) -> tuple[str, bool]:
    lines: list[str] = []
    formed = False
    addrs = []
    for a in bootstrap.split(","):
        host, _, port = a.rpartition(":")
        addrs.append((host, int(port)))
    mds: list[ClusterMetadata] = []
    for host, port in addrs:
        try:
            md = fetch_metadata(host, port, None, 2.0)
        except (OSError, wire.ProtocolError) as e:
            lines.append(f"{host}:{port}  DOWN ({e.__class__.__name__}: {e})")
            continue
        me = next((nid for nid, hp in md.brokers.items() if hp == (host, port)), "?")
        lines.append(
            f"{host}:{port}  node {me}: sees brokers {sorted(md.brokers)}, controller {md.controller_id}, "
            f"cluster id {md.cluster_id}"
        )
        mds.append(md)
        if len(md.brokers) >= len(addrs):
            formed = True
    if mds:
        md = mds[0]
        for name in sorted(md.topics):
            t = md.topics[name]
            for p in sorted(t.partitions.values(), key=lambda p: p.partition):
                lines.append(
                    f"  {name}[{p.partition}] leader {p.leader} epoch {p.leader_epoch} replicas {list(p.replicas)} "
                    f"isr {list(p.isr)}" + (f" offline {list(p.offline)}" if p.offline else "")
                    + (f" error {p.error_code}" if p.error_code else "")
                )
    lines.append(f"formed: {'yes' if formed else 'no'}")
    return "\n".join(lines), formed


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] in ("status", "wait-formed"):
        bootstrap = argv[1]
        if argv[0] == "status":
            text, formed = _format_status(bootstrap)
            print(text)
            return 0 if formed else 1
        timeout = float(argv[2]) if len(argv) > 2 else FORM_TIMEOUT_S
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, formed = _format_status(bootstrap)
            if formed:
                return 0
            time.sleep(0.2)
        print(_format_status(bootstrap)[0])
        return 1
    print("usage: python3 -m harness.cluster status|wait-formed HOST:PORT[,HOST:PORT...] [timeout_s]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
