"""The chaos checker: pure functions from a workload's history and the log
read back afterwards to a report. No I/O, no clocks, so it is unit-tested on
synthetic histories (test_chaos_checker.py) and proven able to fail.

Inputs
- attempts: every record a producer handed to its client (producer id,
  sequence, partition, time of the first produce() call);
- acks: every successful delivery report (producer, sequence, partition,
  offset, time the report arrived);
- failures: every failed delivery report (with the error);
- log: per partition, every (offset, value) read back from offset 0 to the
  high watermark;
- minority windows: intervals during which fewer than min.insync.replicas
  brokers were alive (killed, paused or isolated brokers are not alive).

Safety properties (each count must be 0)
- lost: an acknowledged record is not at its acknowledged offset (missing,
  or another value is stored there);
- duplicated: a value is stored more than once;
- reordered: within a partition, one producer's sequence numbers are not
  increasing in offset order;
- minority_acks: an acknowledgement arrived while fewer than
  min.insync.replicas brokers were alive (later than `grace_s` after the
  window opened: acks already on their way are allowed) for a record that
  was not yet committed when the window opened (a record at or below an
  offset of its partition acknowledged before then was committed already:
  a retry of it may be answered late, as a duplicate), or a record first
  produced in such a window was acknowledged although its client had given
  up on it (Attempt.give_up_by: produce time + message.timeout.ms + one
  request.timeout.ms + a margin) before the window closed. A record whose
  client keeps retrying past the window may legitimately be acknowledged
  once the brokers are back (it is counted, as allowed);
- phantoms: a stored value that no producer ever produced (corruption).

Reported, not enforced: failed and unresolved records, and the longest
stretch of time without any acknowledgement while producers were producing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

VALUE_PREFIX = b"chaos"


def encode_value(producer: int, seq: int, pad: int = 0) -> bytes:
    """b"chaos:PPPP:SSSSSSSSSS" plus optional padding (ignored by decode)."""
    return f"chaos:{producer:04d}:{seq:010d}".encode() + (b"." * pad)


def decode_value(value: bytes | None) -> tuple[int, int] | None:
    """(producer, seq), or None for a value this workload did not write."""
    if not value or not value.startswith(b"chaos:") or len(value) < 21:
        return None
    try:
        return int(value[6:10]), int(value[11:21])
    except ValueError:
        return None


@dataclass(frozen=True)
class Attempt:
    producer: int
    seq: int
    partition: int
    t_produce: float
    give_up_by: float = float("inf")  # the client has failed it by then at the latest


@dataclass(frozen=True)
class Ack:
    producer: int
    seq: int
    partition: int
    offset: int
    t_ack: float


@dataclass(frozen=True)
class Failure:
    producer: int
    seq: int
    partition: int
    t_fail: float
    error: str


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    what: str = ""


@dataclass
class Report:
    produced: int = 0
    acknowledged: int = 0
    failed: int = 0
    unresolved: int = 0
    stored: int = 0
    lost: list = field(default_factory=list)  # (producer, seq, partition, offset, what is there)
    duplicated: list = field(default_factory=list)  # ((producer, seq), [(partition, offset), ...])
    reordered: list = field(default_factory=list)  # (producer, partition, previous seq, seq, offset)
    minority_acks: list = field(default_factory=list)  # (producer, seq, t_produce, t_ack, window, rule)
    phantoms: list = field(default_factory=list)  # (partition, offset, value)
    acks_without_offset: int = 0  # delivery reports with no offset (checked by presence in the partition)
    acked_in_window_produce: int = 0
    late_acks_in_window: int = 0  # acks in a window of records committed before it (allowed)  # records first produced in a minority window, acked after it (allowed)
    failure_kinds: dict = field(default_factory=dict)  # error text -> count
    longest_unavailability_s: float = 0.0
    longest_unavailability_at: tuple[float, float] = (0.0, 0.0)
    gaps: list = field(default_factory=list)  # the longest gaps without an ack: (seconds, start, end)

    def safety_counts(self) -> dict[str, int]:
        return {
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "reordered": len(self.reordered),
            "minority_acks": len(self.minority_acks),
            "phantoms": len(self.phantoms),
        }

    @property
    def ok(self) -> bool:
        return not any(self.safety_counts().values())

    def format(self, t0: float = 0.0, examples: int = 5) -> str:
        lines = [
            f"produced {self.produced}, acknowledged {self.acknowledged}, failed {self.failed}, "
            f"unresolved {self.unresolved}, stored {self.stored}",
            "safety: " + ", ".join(f"{k} {v}" for k, v in self.safety_counts().items())
            + ("  => OK" if self.ok else "  => VIOLATED"),
        ]
        if self.gaps:
            lines.append(
                f"longest unavailability: {self.longest_unavailability_s:.2f} s "
                f"(t={self.longest_unavailability_at[0] - t0:.1f}..{self.longest_unavailability_at[1] - t0:.1f} s)"
            )
        if self.gaps:
            lines.append(
                "longest gaps without an ack: "
                + ", ".join(f"{g:.2f} s at t={a - t0:.1f}" for g, a, _ in self.gaps)
            )
        if self.acks_without_offset:
            lines.append(f"acknowledged without an offset (found by value in their partition): {self.acks_without_offset}")
        if self.acked_in_window_produce:
            lines.append(
                f"records first produced while under min.insync.replicas and acknowledged after the brokers "
                f"came back (allowed): {self.acked_in_window_produce}"
            )
        if self.late_acks_in_window:
            lines.append(
                f"acks that arrived while under min.insync.replicas for records committed before (allowed): "
                f"{self.late_acks_in_window}"
            )
        if self.failure_kinds:
            kinds = sorted(self.failure_kinds.items(), key=lambda kv: -kv[1])
            lines.append("failures by error: " + "; ".join(f"{n} x {e}" for e, n in kinds[:6]))
        for name in ("lost", "duplicated", "reordered", "minority_acks", "phantoms"):
            items = getattr(self, name)
            if items:
                lines.append(f"{name} (first {min(examples, len(items))} of {len(items)}):")
                for item in items[:examples]:
                    lines.append(f"    {_shift_times(item, t0)}")
        return "\n".join(lines)


def _shift_times(item, t0: float):
    if t0 and isinstance(item, tuple):
        return tuple(round(x - t0, 3) if isinstance(x, float) else x for x in item)
    return item


def index_log(log: dict[int, list[tuple[int, bytes | None]]]) -> dict[tuple[int, int], bytes | None]:
    return {(p, off): v for p, records in log.items() for off, v in records}


def find_lost(acks: list[Ack], log: dict[int, list[tuple[int, bytes | None]]]) -> list[tuple]:
    """Acked records not stored at their acknowledged (partition, offset)."""
    at = index_log(log)
    where: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for (p, off), v in at.items():
        d = decode_value(v)
        if d:
            where[d].append((p, off))
    lost = []
    for a in acks:
        if a.offset is None or a.offset < 0:
            # Delivered without an offset (librdkafka does this when it learns a batch was persisted
            # without getting its offsets): it must be stored in its partition.
            places = [pl for pl in where.get((a.producer, a.seq), []) if pl[0] == a.partition]
            if not places:
                lost.append((a.producer, a.seq, a.partition, a.offset, "acked without an offset and not in its partition"))
            continue
        stored = at.get((a.partition, a.offset), None)
        if (a.partition, a.offset) in at and decode_value(stored) == (a.producer, a.seq):
            continue
        if (a.partition, a.offset) not in at:
            there = "nothing (offset not in the log)"
        else:
            there = f"{stored!r}"
        elsewhere = where.get((a.producer, a.seq))
        if elsewhere:
            there += f"; the record is at {elsewhere}"
        lost.append((a.producer, a.seq, a.partition, a.offset, there))
    return lost


def find_duplicates(log: dict[int, list[tuple[int, bytes | None]]]) -> list[tuple]:
    seen: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for p, records in log.items():
        for off, v in records:
            d = decode_value(v)
            if d:
                seen[d].append((p, off))
    return sorted((k, v) for k, v in seen.items() if len(v) > 1)


def find_reordered(log: dict[int, list[tuple[int, bytes | None]]]) -> list[tuple]:
    """Per partition, in offset order: each producer's sequences must increase
    (an equal sequence is a duplicate and reported as such)."""
    out = []
    for p in sorted(log):
        last: dict[int, int] = {}
        for off, v in sorted(log[p], key=lambda r: r[0]):
            d = decode_value(v)
            if not d:
                continue
            producer, seq = d
            prev = last.get(producer)
            if prev is not None and seq < prev:
                out.append((producer, p, prev, seq, off))
            last[producer] = max(seq, prev) if prev is not None else seq
    return out


def find_phantoms(log: dict[int, list[tuple[int, bytes | None]]], attempts: list[Attempt]) -> list[tuple]:
    produced = {(a.producer, a.seq) for a in attempts}
    out = []
    for p, records in log.items():
        for off, v in records:
            d = decode_value(v)
            if d is None or d not in produced:
                out.append((p, off, v[:40] if v else v))
    return out


def _committed_before(acks: list[Ack], t: float) -> dict[int, int]:
    """Per partition, the highest offset acknowledged before t: an acks=all
    acknowledgement means the high watermark had passed it, so every record
    at or below it was committed by then."""
    out: dict[int, int] = {}
    for a in acks:
        if a.t_ack < t and a.offset is not None and a.offset >= 0:
            out[a.partition] = max(out.get(a.partition, -1), a.offset)
    return out


def find_minority_acks(
    attempts: list[Attempt],
    acks: list[Ack],
    windows: list[Window],
    grace_s: float,
    log: dict[int, list[tuple[int, bytes | None]]] | None = None,
) -> tuple[list[tuple], int, int]:
    """(violations, allowed, late): see the module docstring. `allowed`
    counts records first produced in a window and acknowledged after it
    closed, their client still retrying them then. `late` counts acks in a
    window of records that were already committed before it opened (a
    retry answered as a duplicate with its original offset): the ack is
    late, the record was not committed under min.insync.replicas."""
    produced_at = {(a.producer, a.seq): a.t_produce for a in attempts}
    give_up = {(a.producer, a.seq): a.give_up_by for a in attempts}
    stored_at: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for p, records in (log or {}).items():
        for off, v in records:
            d = decode_value(v)
            if d:
                stored_at.setdefault(d, []).append((p, off))
    committed = {id(w): _committed_before(acks, w.start + grace_s) for w in windows}
    violations = []
    allowed = late = 0
    for ack in acks:
        t_produce = produced_at.get((ack.producer, ack.seq))
        for w in windows:
            opened = w.start + grace_s
            if opened <= ack.t_ack < w.end:
                offset = ack.offset
                if offset is None or offset < 0:  # an ack without an offset: where the record is stored
                    places = [o for p, o in stored_at.get((ack.producer, ack.seq), []) if p == ack.partition]
                    offset = min(places) if places else None
                if offset is not None and offset <= committed[id(w)].get(ack.partition, -1):
                    late += 1
                    break
                violations.append((ack.producer, ack.seq, t_produce, ack.t_ack, w.what or (w.start, w.end), "acked in window"))
                break
            if t_produce is not None and opened <= t_produce < w.end:
                if give_up[(ack.producer, ack.seq)] < w.end:
                    violations.append(
                        (ack.producer, ack.seq, t_produce, ack.t_ack, w.what or (w.start, w.end), "produced in window, given up before it closed")
                    )
                    break
                allowed += 1
    return violations, allowed, late


def unavailability(ack_times: list[float], start: float, end: float, top: int = 3) -> tuple[float, tuple[float, float], list]:
    """The longest interval within [start, end] without an ack (the
    producers were producing throughout), and the `top` longest gaps."""
    times = sorted(t for t in ack_times if start <= t <= end)
    points = [start] + times + [end]
    gaps = sorted(((b - a, a, b) for a, b in zip(points, points[1:])), reverse=True)
    if not gaps:
        return 0.0, (start, end), []
    longest = gaps[0]
    return longest[0], (longest[1], longest[2]), gaps[:top]


def check(
    attempts: list[Attempt],
    acks: list[Ack],
    failures: list[Failure],
    log: dict[int, list[tuple[int, bytes | None]]],
    windows: list[Window] = (),
    grace_s: float = 1.0,
    producing: tuple[float, float] | None = None,
) -> Report:
    r = Report()
    r.produced = len(attempts)
    r.acknowledged = len(acks)
    r.failed = len(failures)
    resolved = {(a.producer, a.seq) for a in acks} | {(f.producer, f.seq) for f in failures}
    r.unresolved = sum(1 for a in attempts if (a.producer, a.seq) not in resolved)
    r.stored = sum(len(v) for v in log.values())
    kinds: dict[str, int] = defaultdict(int)
    for f in failures:
        kinds[f.error] += 1
    r.failure_kinds = dict(kinds)
    r.lost = find_lost(acks, log)
    r.acks_without_offset = sum(1 for a in acks if a.offset is None or a.offset < 0)
    r.duplicated = find_duplicates(log)
    r.reordered = find_reordered(log)
    r.phantoms = find_phantoms(log, attempts)
    r.minority_acks, r.acked_in_window_produce, r.late_acks_in_window = find_minority_acks(
        attempts, acks, list(windows), grace_s, log
    )
    if producing is not None:
        r.longest_unavailability_s, r.longest_unavailability_at, r.gaps = unavailability(
            [a.t_ack for a in acks], producing[0], producing[1]
        )
    return r
