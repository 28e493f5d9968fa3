"""The daemon's flight recorder: what it needs to write a scrubbed pcap of an association
that ends badly, kept within a fixed memory budget.

Fed every batch the capture loop reads (``batch``, before the pipeline sees it), it keeps,
for each TCP connection it saw start (its SYN), the frames' link/IP/TCP headers and a live
walk of both directions' streams (``walker.PduWalker`` through ``streams.Tracker``): the
kept bytes (PDU/PDV headers, association PDUs, command sets), never a data-set byte. As a
sink it hears the association's events; when one of the configured triggers fired and the
association has ended (plus ``LINGER_S`` of capture time, for the closing segments), it
writes the same scrubbed pcap ``analyze --evidence`` would, and a ``.txt`` saying what was
scrubbed, into a directory bounded by ``DirectoryBudget``.

Memory: every recording reserves ``max_bytes_per_association`` when it starts, and none
starts when the reservations would pass ``max_memory_bytes`` (counted as suppressed,
reason ``memory``): the total is bounded by construction. Within its reservation a
recording keeps the first half of its frames and a ring of the last ones; the frames in
between are left out (counted in its ``.txt``). Nothing here runs when the section is off.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable
from typing import Any

from dicomsniffd.config.sections import EvidenceConfig
from dicomsniffd.dicom.events import (
    Aborted,
    AssociationEnded,
    AssociationRejected,
    DimseTransaction,
    ProtocolError,
)
from dicomsniffd.evidence import folder
from dicomsniffd.evidence.budget import DirectoryBudget
from dicomsniffd.evidence.frames import TCP_ACK, TCP_SYN, parse, rewrite
from dicomsniffd.evidence.pcapfile import file_header, record
from dicomsniffd.evidence.streams import Connection, Endpoint, Tracker, parse_endpoint
from dicomsniffd.evidence.walker import ASSOCIATE_RQ, DataSetMessage
from dicomsniffd.sinks.dispatch import EventSink

log = logging.getLogger("dicomsniffd.evidence")

TRIGGERS = ("abort", "reject", "failure", "unanswered", "protocol-violation")
LINGER_S = 1.0  # capture seconds after the association's end: the FIN/ACKs are in the file
SILENT_S = 30.0  # a recording with no frame for this long is finished (written if triggered)
FRAME_OVERHEAD = 120  # bookkeeping bytes per kept frame, counted against the budget
RUN_COST = 100  # per kept run of the walk (its list slots and bytes object)
MESSAGE_COST = 150  # per data set whose position the walk remembers
SUPPRESS_REASONS = ("memory", "association-budget", "directory-budget", "write-error", "error")

Key = tuple[bytes, int, bytes, int]
Kept = tuple[int, int, int, int | None, bytes, int, int]  # sec, usec, dir, at, head, n, trail


class Recording:
    """One connection being recorded."""

    __slots__ = (
        "client", "server", "tracker", "conn", "head", "tail", "head_bytes", "tail_bytes",
        "omitted", "triggers", "end_ts", "last_ts", "flow_id", "calling_ae", "called_ae",
        "dicom_checked", "first_ts", "head_end", "next_prune", "walked",
    )  # fmt: skip

    def __init__(self, client: Endpoint, server: Endpoint, ts: float, max_pending: int) -> None:
        self.client, self.server = client, server
        self.tracker = Tracker([(client, server)], walk=True, max_pending=max_pending)
        self.conn: Connection | None = None
        self.head: list[Kept] = []
        self.tail: collections.deque[Kept] = collections.deque()
        self.head_bytes = self.tail_bytes = 0
        self.omitted = 0  # frames left out between head and tail
        self.triggers: set[str] = set()
        self.end_ts: float | None = None
        self.first_ts = self.last_ts = ts
        self.flow_id = 0
        self.calling_ae = self.called_ae = "unknown"
        self.dicom_checked = False
        self.head_end = [0, 0]  # per direction: stream offset after the last head frame
        self.next_prune = 64  # frames left out at which to prune next
        self.walked = 0  # walked_bytes() as of the last frame with a payload

    def walked_bytes(self) -> int:
        """What the walk holds: kept bytes, their runs, data-set positions, held segments."""
        conn = self.conn
        if conn is None:
            return 0
        total = 0
        for d in conn.dirs:  # a loop, not sum() over a generator: this runs per packet
            walker = d.walker
            if walker is not None:
                keep = walker.keep
                total += keep.kept_bytes + RUN_COST * len(keep.starts) + d.pending_bytes
                total += MESSAGE_COST * len(walker.datasets)
        return total

    def prune(self) -> None:
        """Forget what the walk kept for the stream stretch whose frames were left out
        (between the last head frame and the first tail frame of each direction)."""
        if self.conn is None:
            return
        for direction, d in enumerate(self.conn.dirs):
            walker = d.walker
            if walker is None:
                continue
            lo = self.head_end[direction]
            tail = [k[3] for k in self.tail if k[2] == direction and k[3] is not None]
            hi = min(tail, default=walker.pos)
            if hi <= lo:
                continue
            walker.keep.drop_between(lo, hi)
            walker.datasets = [m for m in walker.datasets if not _within(m, lo, hi)]


def _within(message: DataSetMessage, lo: int, hi: int) -> bool:
    """Whether a data set's padding header would fall wholly in ``[lo, hi)``."""
    if not message.head:
        return False
    first, last = message.head[0], message.head[-1]
    return lo <= first[0] and last[0] + last[1] <= hi


class FlightRecorder(EventSink):
    """Keeps what it needs and writes evidence when an association ends badly."""

    EVENTS = {
        Aborted: "_aborted",
        AssociationRejected: "_rejected",
        DimseTransaction: "_transaction",
        ProtocolError: "_protocol_error",
        AssociationEnded: "_ended",
    }

    def __init__(self, config: EvidenceConfig, linktype: int, worker: str = "0") -> None:
        super().__init__()
        self.config = config
        self.linktype = linktype
        self.worker = worker
        self.triggers = frozenset(config.triggers)
        self.budget = DirectoryBudget(
            config.directory, config.max_files, config.max_directory_bytes
        )
        self._by_key: dict[Key, Recording] = {}
        self._by_pair: dict[tuple[Endpoint, Endpoint], Recording] = {}
        self.written = 0
        self.bytes_written = 0
        self.suppressed = dict.fromkeys(SUPPRESS_REASONS, 0)
        self._logged: set[str] = set()
        folder.prepare(config.directory)
        folder.write_text(
            config.directory,
            folder.README,
            folder.readme("PHI-scrubbed evidence written by the dicomsniffd flight recorder", []),
        )

    # -- memory ----------------------------------------------------------------------------

    @property
    def recordings(self) -> int:
        return len(self._by_pair)

    @property
    def reserved_bytes(self) -> int:
        """The memory budget the recordings hold (each its per-association reservation)."""
        return len(self._by_pair) * self.config.max_bytes_per_association

    def memory_bytes(self) -> int:
        """What the recordings really hold now (headers, kept bytes, held segments)."""
        return sum(r.head_bytes + r.tail_bytes + r.walked_bytes() for r in self._by_pair.values())

    # -- packets ---------------------------------------------------------------------------

    def batch(self, packet_bytes: bytes, records: Iterable[tuple[int, int, int, int]]) -> None:
        """Every frame of one capture batch (the recorder's only per-packet work)."""
        linktype = self.linktype
        ts = None
        for sec, usec, offset, caplen in records:
            frame = packet_bytes[offset : offset + caplen]
            tcp = parse(linktype, frame)
            if tcp is None:
                continue
            ts = sec + usec * 1e-6
            key = (tcp.src, tcp.sport, tcp.dst, tcp.dport)
            rec = self._by_key.get(key)
            opening = tcp.flags & TCP_SYN and not tcp.flags & TCP_ACK
            if opening and (rec is None or rec.conn is None or rec.conn.client_isn != tcp.seq):
                if rec is not None:
                    self._finish(rec)
                rec = self._start((tcp.src, tcp.sport), (tcp.dst, tcp.dport), ts)
            if rec is None:
                continue
            try:
                self._record(rec, ts, sec, usec, frame, tcp)
            except Exception as exc:  # a bug must cost one recording, never the capture loop
                self.suppressed["error"] += 1
                self._drop(rec)
                self._log_once("error", f"evidence recording dropped after an error: {exc!r}")
        if ts is not None:
            self.tick(ts)

    def _record(
        self, rec: Recording, ts: float, sec: int, usec: int, frame: bytes, tcp: Any
    ) -> None:
        payload = frame[tcp.payload_at : tcp.payload_end]
        placed = rec.tracker.place(ts, tcp, payload)
        if placed is None:
            return
        conn, direction, at = placed
        rec.conn, rec.last_ts = conn, ts
        if payload and direction == 0 and at == 0 and not rec.dicom_checked:
            rec.dicom_checked = True
            if payload[0] != ASSOCIATE_RQ:  # not DICOM: forget it
                self._drop(rec)
                return
        if payload:  # only a payload moves the walk
            rec.walked = rec.walked_bytes()
        head = frame[: tcp.payload_at]
        kept = (sec, usec, direction, at, head, len(payload), len(frame) - tcp.payload_end)
        self._keep(rec, kept, len(head) + FRAME_OVERHEAD)

    def _start(self, client: Endpoint, server: Endpoint, ts: float) -> Recording | None:
        if self.reserved_bytes + self.config.max_bytes_per_association > (
            self.config.max_memory_bytes
        ):
            self.suppressed["memory"] += 1
            return None
        rec = Recording(client, server, ts, self.config.max_bytes_per_association // 4)
        self._by_key[(*client, *server)] = rec
        self._by_key[(*server, *client)] = rec
        self._by_pair[(client, server)] = rec
        return rec

    def _keep(self, rec: Recording, kept: Kept, cost: int) -> None:
        limit = self.config.max_bytes_per_association
        # The head holds the first frames and what the walk kept for them: half the budget.
        if not rec.tail and rec.head_bytes + cost + rec.walked <= limit // 2:
            rec.head.append(kept)
            rec.head_bytes += cost
            direction, at, length = kept[2], kept[3], kept[5]
            if at is not None and at + length > rec.head_end[direction]:
                rec.head_end[direction] = at + length
            return
        rec.tail.append(kept)
        rec.tail_bytes += cost
        walked = rec.walked
        while rec.tail and rec.head_bytes + rec.tail_bytes + walked > limit:
            old = rec.tail.popleft()
            rec.tail_bytes -= len(old[4]) + FRAME_OVERHEAD
            rec.omitted += 1
            if rec.omitted >= rec.next_prune:  # what the walk kept for left-out frames goes
                walked = self._prune(rec)
        if rec.head_bytes + walked > limit:
            walked = self._prune(rec)
        if rec.head_bytes + walked > limit:  # the walk alone outgrew the reservation
            self.suppressed["association-budget"] += 1
            self._drop(rec)

    @staticmethod
    def _prune(rec: Recording) -> int:
        """Prune, and say when next: prune reads the tail, so not on every frame."""
        rec.prune()
        rec.next_prune = rec.omitted + max(64, len(rec.tail) // 4)
        rec.walked = rec.walked_bytes()
        return rec.walked

    # -- events ----------------------------------------------------------------------------

    def _recording(self, flow: Any) -> Recording | None:
        try:
            pair = (parse_endpoint(flow.client), parse_endpoint(flow.server))
        except (AttributeError, ValueError):
            return None
        rec = self._by_pair.get(pair)
        if rec is not None:
            rec.flow_id = flow.flow_id
            rec.calling_ae, rec.called_ae = flow.calling_ae, flow.called_ae
        return rec

    def _trigger(self, flow: Any, name: str) -> None:
        rec = self._recording(flow)
        if rec is not None and name in self.triggers:
            rec.triggers.add(name)

    def _aborted(self, event: Aborted, flow: Any) -> None:
        self._trigger(flow, "abort")

    def _rejected(self, event: AssociationRejected, flow: Any) -> None:
        self._trigger(flow, "reject")

    def _transaction(self, event: DimseTransaction, flow: Any) -> None:
        if event.status_class == "failure":
            self._trigger(flow, "failure")
        elif event.outcome != "answered":
            self._trigger(flow, "unanswered")

    def _protocol_error(self, event: ProtocolError, flow: Any) -> None:
        self._trigger(flow, "protocol-violation")

    def _ended(self, event: AssociationEnded, flow: Any) -> None:
        if event.how in ("aborted", "reset"):
            self._trigger(flow, "abort")
        rec = self._recording(flow)
        if rec is not None:
            rec.end_ts = event.ts

    # -- writing ---------------------------------------------------------------------------

    def tick(self, ts: float) -> None:
        """On the capture clock: finish the recordings whose association ended (after
        ``LINGER_S``) or that went silent."""
        due = [
            r
            for r in self._by_pair.values()
            if (r.end_ts is not None and ts >= r.end_ts + LINGER_S) or ts >= r.last_ts + SILENT_S
        ]
        for rec in due:
            self._finish(rec)

    def close(self) -> None:
        """Shutdown: write what has triggered, forget the rest."""
        for rec in list(self._by_pair.values()):
            self._finish(rec)

    def _drop(self, rec: Recording) -> None:
        self._by_pair.pop((rec.client, rec.server), None)
        for key in ((*rec.client, *rec.server), (*rec.server, *rec.client)):
            if self._by_key.get(key) is rec:
                del self._by_key[key]

    def _finish(self, rec: Recording) -> None:
        self._drop(rec)
        if not rec.triggers or rec.conn is None:
            return
        try:
            self._write(rec)
        except (folder.EvidenceError, OSError) as exc:
            self.suppressed["write-error"] += 1
            self._log_once("write", f"evidence not written: {exc}")
        except Exception as exc:  # a bug: counted and logged, the daemon goes on
            self.suppressed["error"] += 1
            self._log_once("error", f"evidence not written after an error: {exc!r}")

    def _log_once(self, what: str, message: str) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.warning(
                "%s (logged once; counted in dicomsniffd_evidence_suppressed_total)", message
            )

    def _write(self, rec: Recording) -> None:
        conn = rec.conn
        assert conn is not None
        rec.tracker.finish()
        frames = [*rec.head, *rec.tail]
        size = len(file_header(self.linktype)) + sum(16 + len(f[4]) + f[5] + f[6] for f in frames)
        if not self.budget.make_room(size):
            self.suppressed["directory-budget"] += 1
            self._log_once("budget", f"evidence of {size} bytes does not fit evidence.max_*")
            return
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(rec.first_ts))
        micro = int((rec.first_ts % 1) * 1e6)
        stem = folder.safe_name(
            f"{stamp}.{micro:06d}Z", f"assoc{rec.flow_id}", f"w{self.worker}", rec.calling_ae,
            "to", rec.called_ae,
        )  # fmt: skip
        directory = self.config.directory
        try:
            with folder.create(directory, stem + ".pcap") as out:
                out.write(file_header(self.linktype))
                for kept in frames:
                    out.write(self._frame(conn, kept))
            text = self._describe(rec, stem, len(frames))
            folder.write_text(directory, stem + ".txt", text)
        except BaseException:
            folder.remove_quietly(directory, stem + ".pcap")
            folder.remove_quietly(directory, stem + ".txt")
            raise
        self.written += 1
        self.bytes_written += size + len(text.encode())

    def _frame(self, conn: Connection, kept: Kept) -> bytes:
        sec, usec, direction, at, head, length, trail = kept
        d = conn.dirs[direction]
        if at is None or d.walker is None:
            payload = bytes(length)
        else:
            payload = d.walker.keep.overlay(at, length, d.padding)
        frame = head + payload + bytes(trail)
        tcp = parse(self.linktype, frame)
        if tcp is not None:
            frame, _recomputed = rewrite(frame, tcp, payload)
        return record(sec, usec, frame, len(frame))

    def _describe(self, rec: Recording, stem: str, frames: int) -> str:
        from dicomsniffd.evidence.offline import walk_lines  # the README's wording, shared

        lines = [
            f"{stem}.pcap: association {rec.flow_id} (worker {self.worker}) "
            f"{rec.calling_ae} → {rec.called_ae}, triggered by: {', '.join(sorted(rec.triggers))}",
            f"  {frames} frames written",
        ]
        if rec.omitted:
            lines.append(
                f"  {rec.omitted} frames in the middle left out (the association outgrew "
                "evidence.max_bytes_per_association): the file shows its start and its end"
            )
        assert rec.conn is not None
        lines += walk_lines(rec.conn)
        return folder.readme(
            "PHI-scrubbed evidence written by the dicomsniffd flight recorder", lines
        )

    def stats(self) -> dict[str, Any]:
        """For the self-metrics (Pipeline.self_stats keys, ``dicomsniffd_evidence_*``)."""
        return {
            "evidence_files_written": self.written,
            "evidence_bytes_written": self.bytes_written,
            "evidence_suppressed": dict(self.suppressed),
            "evidence_files_removed": self.budget.removed,
            "evidence_memory_bytes": self.memory_bytes(),
            "evidence_recordings": self.recordings,
        }


def idle_stats() -> dict[str, Any]:
    """The self statistics of a recorder that is off: every counter 0."""
    return {
        "evidence_files_written": 0,
        "evidence_bytes_written": 0,
        "evidence_suppressed": dict.fromkeys(SUPPRESS_REASONS, 0),
        "evidence_files_removed": 0,
        "evidence_memory_bytes": 0,
        "evidence_recordings": 0,
    }
