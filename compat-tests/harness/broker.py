"""Run a real `odradek` process for a test.

A BrokerProcess owns one loopback port and one data directory for its whole
life, so it can be stopped (SIGTERM or SIGKILL) and started again on the same
address with the same data: that is what the restart tests need.

"Ready" means what a client needs: the port accepts TCP *and* answers an
ApiVersions request. Start-up failures show the tail of the broker's stderr,
which is always written to a log file (never a pipe, which could fill up and
block the broker).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from harness import wire

REPO_ROOT = Path(__file__).resolve().parents[2]

START_TIMEOUT_S = 30.0
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_BACKTRACE_FRAME = re.compile(r"^\s+(\d+: |at /)")
STOP_TIMEOUT_S = 15.0


def broker_binary() -> Path:
    """The dev-profile broker binary (ODRADEK_BIN overrides, for a release build)."""
    if os.environ.get("ODRADEK_BIN"):
        return Path(os.environ["ODRADEK_BIN"])
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    return target_dir / "debug" / "odradek"


def free_loopback_port() -> int:
    """A port that was free a moment ago. The kernel hands out ephemeral
    ports in sequence, so the race with another process is unlikely."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerStartError(RuntimeError):
    pass


class BrokerProcess:
    def __init__(
        self,
        data_dir: Path,
        log_dir: Path,
        port: int | None = None,
        dev: bool | None = None,
        extra_args: list[str] | None = None,
        binary: Path | None = None,
        host: str = "127.0.0.1",
        command_prefix: list[str] | None = None,
    ):
        self.binary = Path(binary) if binary else broker_binary()
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.port = port or free_loopback_port()
        # --dev (no fsync) keeps the suite fast; ODRADEK_COMPAT_FSYNC=1 runs it with fsync, as in production.
        self.dev = dev if dev is not None else os.environ.get("ODRADEK_COMPAT_FSYNC") != "1"
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_path: Path | None = None
        # Cluster nodes may listen on another local address (a network
        # namespace's) and run under a prefix such as `ip netns exec NS`,
        # which execs the broker (so self.pid is still the broker's pid).
        self._host = host
        self.command_prefix = list(command_prefix or [])
        self.paused = False

    # -- addresses -------------------------------------------------------
    @property
    def host(self) -> str:
        return self._host

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        cmd = self.command_prefix + [str(self.binary), "--listen", self.bootstrap, "--data-dir", str(self.data_dir)]
        if self.dev:
            cmd.append("--dev")
        return cmd + self.extra_args

    # -- lifecycle -------------------------------------------------------
    def start(self, timeout_s: float = START_TIMEOUT_S) -> float:
        """Start the process and wait until it answers ApiVersions.
        Returns the seconds it took to become ready."""
        started = self.launch()
        self.wait_ready(timeout_s, started)
        return time.monotonic() - started

    def launch(self) -> float:
        """Start the process without waiting for it (the nodes of a cluster
        start together). Returns the time.monotonic() of the start."""
        if not self.binary.exists():
            raise BrokerStartError(f"broker binary {self.binary} does not exist (run `cargo build`)")
        if self.running():
            raise BrokerStartError("broker already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        # One log per start, so a restart's output never hides the previous crash.
        self.log_path = self.log_dir / f"odradek-{self.port}-start{self.starts}.log"
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env["NO_COLOR"] = "1"  # plain text in the log file
        log = open(self.log_path, "wb")
        started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        finally:
            log.close()
        self.paused = False
        return started

    def wait_ready(self, timeout_s: float, started: float | None = None) -> None:
        started = time.monotonic() if started is None else started
        deadline = started + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise BrokerStartError(
                    f"odradek exited with code {self.proc.returncode} before it was ready\n"
                    + self.describe_failure()
                )
            try:
                wire.api_versions(self.host, self.port, timeout_s=2.0)
                return
            except (OSError, wire.ProtocolError) as e:
                last_error = e
                time.sleep(0.02)
        raise BrokerStartError(
            f"odradek did not answer ApiVersions on {self.bootstrap} within {timeout_s}s "
            f"(last error: {last_error!r})\n" + self.describe_failure()
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM and wait: a graceful shutdown. Falls back to SIGKILL (and
        raises) if the broker does not exit in time, since that is a bug."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.paused:  # a stopped process only acts on SIGTERM once continued
                self.resume()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(
                    f"odradek did not exit within {timeout_s}s of SIGTERM; killed it\n" + self.describe_failure()
                )
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL: the process gets no chance to flush or close anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the process freezes (no heartbeats, no answers) with its
        sockets open, like a long GC pause or a hung VM."""
        if self.running() and not self.paused:
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self.proc is not None and self.paused:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)
            self.paused = False

    def restart(self, hard: bool = False, timeout_s: float = START_TIMEOUT_S) -> float:
        """Stop (SIGTERM, or SIGKILL when hard) and start again on the same
        port and data dir. Returns the seconds until ready again."""
        if hard:
            self.kill9()
        else:
            self.stop()
        return self.start(timeout_s)

    # -- diagnostics -----------------------------------------------------
    def log_tail(self, max_lines: int = 60) -> str:
        """The last lines of the current log, without ANSI colours and
        without backtrace frames (they would crowd out the panic message;
        the full log stays on disk)."""
        if not self.log_path or not self.log_path.exists():
            return "(no broker log)"
        text = _ANSI_ESCAPE.sub("", self.log_path.read_text(errors="replace"))
        lines = [line for line in text.splitlines() if not _BACKTRACE_FRAME.match(line)]
        return "\n".join(lines[-max_lines:])

    def describe_failure(self) -> str:
        return f"--- command: {' '.join(self.command())}\n--- log {self.log_path} (tail):\n{self.log_tail()}"

    def rss_kib(self) -> int:
        """Resident set size from /proc/PID/status (VmRSS, in KiB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("VmRSS missing from /proc status")
