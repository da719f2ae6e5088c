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


# --------------------------------------------------------------------------
# The transactional workload (chaos_run.py --transactions)
# --------------------------------------------------------------------------
# Transactional histories.
#
# Inputs
# - transactions: every transaction a producer began (producer, transaction
#   number, the partition of each of its records, in record-index order, and
#   its outcome as the client saw it):
#     committed  commit_transaction returned without an exception;
#     aborted    abort_transaction was called on purpose, or the client asked
#                for an abort (txn_requires_abort), or the producer failed
#                before commit_transaction was ever called (no EndTxn(commit)
#                was sent: nothing can commit it);
#     unknown    commit_transaction was called but the client could not tell
#                how it ended (it kept timing out, or the producer turned fatal
#                and was recreated with the same transactional.id): either all
#                of its records are visible or none.
# - acks: delivery reports (record, partition, offset) of transactional records;
# - committed_log / uncommitted_log: per partition, every (offset, value) read
#   from offset 0 by a read_committed consumer (up to the last stable offset)
#   and by a read_uncommitted one (up to the high watermark);
# - ends: per partition, (last stable offset, high watermark) at the end, after
#   the cluster healed and transaction.timeout.ms passed.
#
# Safety properties (each count must be 0)
# - lost_committed: a record of a committed transaction is not in the
#   read_committed log at its acknowledged offset;
# - visible_aborted: a record of an aborted transaction is in the
#   read_committed log;
# - partial: a transaction (unknown, or committed with records lost) shows some
#   but not all of its records read_committed;
# - duplicates: a record appears more than once (in either log);
# - reordered: per partition, one producer's records are not in (transaction,
#   index) order in the read_committed log;
# - phantoms: a value that was never sent (to that partition), in either log;
# - inconsistent: a record read_committed is not at the same offset read_uncommitted;
# - hanging: a partition's last stable offset is below its high watermark at
#   the end (an open transaction nobody completes or times out).

COMMITTED, ABORTED, UNKNOWN = "committed", "aborted", "unknown"
TXN_OUTCOMES = (COMMITTED, ABORTED, UNKNOWN)


def encode_txn_value(producer: int, txn: int, index: int, pad: int = 0) -> bytes:
    """b"ctxn:PPPP:TTTTTTTT:IIII" plus optional padding (ignored by decode)."""
    return f"ctxn:{producer:04d}:{txn:08d}:{index:04d}".encode() + (b"." * pad)


def decode_txn_value(value: bytes | None) -> tuple[int, int, int] | None:
    """(producer, transaction, record index), or None for a value this workload did not write."""
    if not value or not value.startswith(b"ctxn:") or len(value) < 23:
        return None
    try:
        return int(value[5:9]), int(value[10:18]), int(value[19:23])
    except ValueError:
        return None


@dataclass
class Txn:
    producer: int
    txn: int
    partitions: tuple[int, ...]  # the partition of record i (only the records actually produced)
    outcome: str = UNKNOWN
    t_begin: float = 0.0
    t_end: float = 0.0
    how: str = ""  # how the client got to the outcome (errors, retries), for the report
    t_commit_called: float | None = None  # the first commit_transaction call


@dataclass(frozen=True)
class TxnAck:
    producer: int
    txn: int
    index: int
    partition: int
    offset: int
    t_ack: float


@dataclass
class TxnReport:
    transactions: dict = field(default_factory=dict)  # outcome -> count
    unknown_resolved: dict = field(default_factory=dict)  # "all visible" / "none visible" -> count
    records_sent: int = 0
    records_checked: int = 0  # records in the read_committed log
    records_uncommitted: int = 0  # records in the read_uncommitted log
    lost_committed: list = field(default_factory=list)  # (producer, txn, index, partition, acked offset, what is there)
    visible_aborted: list = field(default_factory=list)  # (producer, txn, index, partition, offset, how)
    partial: list = field(default_factory=list)  # (producer, txn, outcome, visible, of, how)
    duplicates: list = field(default_factory=list)  # ((producer, txn, index), isolation, [(partition, offset)...])
    reordered: list = field(default_factory=list)  # (producer, partition, previous (txn, index), (txn, index), offset)
    phantoms: list = field(default_factory=list)  # (isolation, partition, offset, value, why)
    inconsistent: list = field(default_factory=list)  # (partition, offset, read_committed value, read_uncommitted value)
    hanging: list = field(default_factory=list)  # (partition, lso, high watermark, what is at the lso)
    ends: dict = field(default_factory=dict)  # partition -> (lso, hw)
    longest_commit_gap_s: float = 0.0  # the longest time without any successful commit while producing
    longest_commit_gap_at: tuple[float, float] = (0.0, 0.0)
    commit_gaps: list = field(default_factory=list)
    longest_commit_call_s: float = 0.0  # the longest from a first commit_transaction call to its success
    longest_commit_call_of: tuple = ()

    def safety_counts(self) -> dict[str, int]:
        return {
            "lost_committed": len(self.lost_committed),
            "visible_aborted": len(self.visible_aborted),
            "partial": len(self.partial),
            "duplicates": len(self.duplicates),
            "reordered": len(self.reordered),
            "phantoms": len(self.phantoms),
            "inconsistent": len(self.inconsistent),
            "hanging": len(self.hanging),
        }

    @property
    def ok(self) -> bool:
        return not any(self.safety_counts().values())

    def format(self, t0: float = 0.0, examples: int = 5) -> str:
        lines = [
            "transactions: " + ", ".join(f"{o} {self.transactions.get(o, 0)}" for o in TXN_OUTCOMES)
            + (f" (unknown resolved: {', '.join(f'{k} {v}' for k, v in sorted(self.unknown_resolved.items()))})"
               if self.unknown_resolved else ""),
            f"records sent {self.records_sent}, read_committed {self.records_checked}, "
            f"read_uncommitted {self.records_uncommitted}",
            "end offsets (LSO/high watermark): "
            + (", ".join(f"p{p} {lso}/{hw}" for p, (lso, hw) in sorted(self.ends.items())) or "none"),
            "safety: " + ", ".join(f"{k} {v}" for k, v in self.safety_counts().items())
            + ("  => OK" if self.ok else "  => VIOLATED"),
            f"longest time without a successful commit: {self.longest_commit_gap_s:.2f} s "
            f"(t={self.longest_commit_gap_at[0] - t0:.1f}..{self.longest_commit_gap_at[1] - t0:.1f} s); "
            f"longest commit_transaction (first call to success): {self.longest_commit_call_s:.2f} s"
            + (f" ({_shift_times(self.longest_commit_call_of, t0)})" if self.longest_commit_call_of else ""),
        ]
        for name in self.safety_counts():
            items = getattr(self, name)
            if items:
                lines.append(f"{name} (first {min(examples, len(items))} of {len(items)}):")
                for item in items[:examples]:
                    lines.append(f"    {_shift_times(item, t0)}")
        return "\n".join(lines)


def _txn_records(log: dict[int, list[tuple[int, bytes | None]]]):
    for p in sorted(log):
        for off, v in sorted(log[p], key=lambda r: r[0]):
            yield p, off, v, decode_txn_value(v)


def check_transactions(
    txns: list[Txn],
    acks: list[TxnAck],
    committed_log: dict[int, list[tuple[int, bytes | None]]],
    uncommitted_log: dict[int, list[tuple[int, bytes | None]]],
    ends: dict[int, tuple[int, int]] | None = None,
    producing: tuple[float, float] | None = None,
) -> TxnReport:
    r = TxnReport()
    by_key = {(t.producer, t.txn): t for t in txns}
    for t in txns:
        r.transactions[t.outcome] = r.transactions.get(t.outcome, 0) + 1
    r.records_sent = sum(len(t.partitions) for t in txns)
    r.records_checked = sum(len(v) for v in committed_log.values())
    r.records_uncommitted = sum(len(v) for v in uncommitted_log.values())
    r.ends = dict(ends or {})

    def sent_there(d, p) -> str | None:
        """Why a decoded record at partition p was never sent there (None: it was)."""
        t = by_key.get((d[0], d[1]))
        if t is None:
            return "no such transaction"
        if d[2] >= len(t.partitions):
            return f"the transaction has {len(t.partitions)} records"
        if t.partitions[d[2]] != p:
            return f"sent to partition {t.partitions[d[2]]}"
        return None

    # phantoms and duplicates, in both logs
    where: dict[str, dict[tuple, list]] = {}
    for isolation, log in (("read_committed", committed_log), ("read_uncommitted", uncommitted_log)):
        seen: dict[tuple, list] = defaultdict(list)
        for p, off, v, d in _txn_records(log):
            why = "not a value of this workload" if d is None else sent_there(d, p)
            if why:
                r.phantoms.append((isolation, p, off, v[:40] if v else v, why))
                continue
            seen[d].append((p, off))
        where[isolation] = seen
        r.duplicates += [(k, isolation, v) for k, v in sorted(seen.items()) if len(v) > 1]

    # read_committed is what read_uncommitted has at the same offsets
    at_uncommitted = index_log(uncommitted_log)
    for p, off, v, _ in _txn_records(committed_log):
        if (p, off) not in at_uncommitted:
            r.inconsistent.append((p, off, v[:40] if v else v, "offset not in the read_uncommitted log"))
        elif at_uncommitted[(p, off)] != v:
            r.inconsistent.append((p, off, v[:40] if v else v, at_uncommitted[(p, off)][:40]))

    # committed: all, at their acknowledged offsets; aborted: none; unknown: all or none
    visible = where["read_committed"]
    acked = {(a.producer, a.txn, a.index): a for a in acks}
    at_committed = index_log(committed_log)
    lso_of = {p: lso for p, (lso, _hw) in r.ends.items()}
    for t in txns:
        keys = [(t.producer, t.txn, i) for i in range(len(t.partitions))]
        shown = [k for k in keys if k in visible]
        if t.outcome == COMMITTED:
            for k in keys:
                p = t.partitions[k[2]]
                a = acked.get(k)
                places = visible.get(k, [])
                if a is not None and a.offset is not None and a.offset >= 0:
                    if decode_txn_value(at_committed.get((p, a.offset))) == k:
                        continue
                    if (p, a.offset) in at_committed:
                        there = f"{at_committed[(p, a.offset)][:40]!r}"
                    else:
                        there = "nothing (offset not in the read_committed log)"
                    offset = a.offset
                elif places:
                    continue  # committed without a delivery offset: its presence is what counts
                else:
                    there, offset = "not in the read_committed log", None
                if places:
                    there += f"; the record is at {places}"
                elif offset is not None and p in lso_of and offset >= lso_of[p]:
                    there += f"; at or beyond the last stable offset {lso_of[p]} (a hanging transaction)"
                r.lost_committed.append((t.producer, t.txn, k[2], p, offset, there))
            if shown and len(shown) < len(keys):
                r.partial.append((t.producer, t.txn, t.outcome, len(shown), len(keys), t.how))
        elif t.outcome == ABORTED:
            for k in shown:
                r.visible_aborted.append((t.producer, t.txn, k[2], t.partitions[k[2]], visible[k][0][1], t.how))
        else:
            if 0 < len(shown) < len(keys):
                r.partial.append((t.producer, t.txn, t.outcome, len(shown), len(keys), t.how))
            else:
                what = "all visible" if shown else "none visible"
                r.unknown_resolved[what] = r.unknown_resolved.get(what, 0) + 1

    # per partition, one producer's records in (transaction, index) order
    for p in sorted(committed_log):
        last: dict[int, tuple[int, int]] = {}
        for _, off, v, d in _txn_records({p: committed_log[p]}):
            if d is None:
                continue
            producer, key = d[0], (d[1], d[2])
            prev = last.get(producer)
            if prev is not None and key < prev:
                r.reordered.append((producer, p, prev, key, off))
            last[producer] = max(key, prev) if prev is not None else key

    # no hanging transaction: the last stable offset reached the high watermark
    for p, (lso, hw) in sorted(r.ends.items()):
        if lso < hw:
            what = "nothing readable"
            v = at_uncommitted.get((p, lso))
            d = decode_txn_value(v)
            if d is not None:
                t = by_key.get((d[0], d[1]))
                what = f"record {d} of a transaction the client saw {t.outcome if t else 'never'}" + (
                    f" ({t.how})" if t and t.how else "")
            elif (p, lso) in at_uncommitted:
                what = f"{v[:40]!r}"
            r.hanging.append((p, lso, hw, what))

    # availability of commits
    commits = [t for t in txns if t.outcome == COMMITTED]
    if producing is not None:
        r.longest_commit_gap_s, r.longest_commit_gap_at, r.commit_gaps = unavailability(
            [t.t_end for t in commits], producing[0], producing[1]
        )
    for t in commits:
        if t.t_commit_called is not None and t.t_end - t.t_commit_called > r.longest_commit_call_s:
            r.longest_commit_call_s = t.t_end - t.t_commit_called
            r.longest_commit_call_of = (t.producer, t.txn, t.t_commit_called, t.how)
    return r
