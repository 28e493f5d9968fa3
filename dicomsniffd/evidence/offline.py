"""``analyze --evidence DIR``: one scrubbed pcap per chosen association, and a README.

Two more passes over the capture files, reading only the frames of the chosen
connections: the first walks each direction's stream (``streams.Tracker`` with
``walk=True``) to learn which bytes are headers and command sets; the second writes every
frame of those connections with everything else overwritten (``walker.KeepMap.overlay``).
Output files are opened a bounded number at a time (more chosen associations: more
second passes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from dicomsniffd.capture import FileSource
from dicomsniffd.evidence import folder
from dicomsniffd.evidence.folder import EvidenceError
from dicomsniffd.evidence.frames import TcpFrame, parse, rewrite
from dicomsniffd.evidence.pcapfile import PcapWriter
from dicomsniffd.evidence.select import choose
from dicomsniffd.evidence.streams import Connection, Tracker, parse_endpoint
from dicomsniffd.evidence.walker import FILL

MAX_OPEN_FILES = 128


@dataclass(slots=True)
class Written:
    """One evidence file and what went into it."""

    association: Mapping[str, Any]
    name: str
    frames: int = 0
    bytes: int = 0
    payload_bytes: int = 0
    no_checksum: int = 0  # frames cut by the snap length: checksums left as captured
    other_link: int = 0  # frames of another link type than the file's first: not written


Frame = tuple[float, int, int, int, bytes]  # (ts, sec, usec, linktype, frame)


def frames(paths: Sequence[str], batch_size: int = 512) -> Iterator[Frame]:
    for path in paths:
        with FileSource(path) as source:
            for linktype, data, records in source.link_batches(batch_size):
                for sec, usec, offset, caplen in records:
                    yield sec + usec * 1e-6, sec, usec, linktype, data[offset : offset + caplen]


def _tcp_frames(paths: Sequence[str]) -> Iterator[tuple[Frame, TcpFrame]]:
    for item in frames(paths):
        tcp = parse(item[3], item[4])
        if tcp is not None:
            yield item, tcp


def _pairs(chosen: Sequence[Mapping[str, Any]]) -> set[tuple[Any, Any]]:
    return {(parse_endpoint(a["client"]), parse_endpoint(a["server"])) for a in chosen}


def _match(a: Mapping[str, Any], instances: Sequence[Connection]) -> Connection | None:
    """The connection an association ran on: the one whose frames span its start, else
    the last that began before it."""
    start = a.get("start_ts")
    if not instances:
        return None
    if start is None:
        return instances[0]
    best = None
    for conn in instances:
        if conn.first_ts is not None and conn.first_ts <= start:
            best = conn
            if conn.last_ts is not None and start <= conn.last_ts:
                return conn
    return best or instances[0]


def write_evidence(
    paths: Sequence[str], chosen: Sequence[Mapping[str, Any]], directory: str
) -> list[Written]:
    """Write the evidence files and the README into ``directory`` (already prepared);
    EvidenceError (one line) when a file cannot be written."""
    walked = Tracker(_pairs(chosen), walk=True)
    for (ts, *_rest, frame), tcp in _tcp_frames(paths):
        walked.place(ts, tcp, frame[tcp.payload_at : tcp.payload_end])
    walked.finish()
    targets: dict[tuple[Any, Any, int], Written] = {}
    for a in chosen:
        pair = (parse_endpoint(a["client"]), parse_endpoint(a["server"]))
        conn = _match(a, walked.connections[pair])
        if conn is None or (*pair, conn.index) in targets:
            continue
        name = folder.safe_name(
            f"assoc{a['flow_id']}", a.get("calling_ae") or "unknown", "to",
            a.get("called_ae") or "unknown",
        ) + ".pcap"  # fmt: skip
        targets[(*pair, conn.index)] = Written(a, name)
    keys = list(targets)
    for start in range(0, len(keys), MAX_OPEN_FILES):
        batch = {k: targets[k] for k in keys[start : start + MAX_OPEN_FILES]}
        _write_batch(paths, walked, batch, directory)
    folder.write_text(directory, folder.README, _readme(list(targets.values()), walked))
    return list(targets.values())


def _write_batch(
    paths: Sequence[str],
    walked: Tracker,
    batch: dict[tuple[Any, Any, int], Written],
    directory: str,
) -> None:
    replay = Tracker({(k[0], k[1]) for k in batch}, walk=False)
    writers: dict[tuple[Any, Any, int], tuple[BinaryIO, PcapWriter]] = {}
    try:
        for (ts, sec, usec, linktype, frame), tcp in _tcp_frames(paths):
            payload = frame[tcp.payload_at : tcp.payload_end]
            placed = replay.place(ts, tcp, payload)
            if placed is None:
                continue
            conn, direction, at = placed
            key = (conn.client, conn.server, conn.index)
            target = batch.get(key)
            if target is None:
                continue
            if key not in writers:
                stream = folder.create(directory, target.name)
                writers[key] = (stream, PcapWriter(stream, linktype))
            writer = writers[key][1]
            if linktype != writer.linktype:
                target.other_link += 1
                continue
            source = walked.connections[(conn.client, conn.server)][conn.index].dirs[direction]
            if at is None or source.walker is None:
                scrubbed = bytes([FILL]) * len(payload)
            else:
                scrubbed = source.walker.keep.overlay(at, len(payload), source.padding)
            out, recomputed = rewrite(frame, tcp, scrubbed)
            writer.write(sec, usec, out, len(frame))
            target.frames += 1
            target.bytes = writer.bytes_written
            target.payload_bytes += len(payload)
            target.no_checksum += not recomputed
        while writers:
            _key, (stream, _writer) = writers.popitem()
            stream.close()  # a full disk may only say so here
    except OSError as exc:
        for stream, _writer in writers.values():
            with contextlib.suppress(OSError):
                stream.close()
        for target in batch.values():
            folder.remove_quietly(directory, target.name)
        raise EvidenceError(
            f"cannot write evidence in {directory}: {exc.strerror or exc}"
        ) from None


def _readme(written: Sequence[Written], walked: Tracker) -> str:
    lines = [f"Files ({len(written)})"]
    for w in written:
        a = w.association
        pair = (parse_endpoint(a["client"]), parse_endpoint(a["server"]))
        conn = _match(a, walked.connections[pair])
        lines.append(
            f"- {w.name}: association {a['flow_id']} {a.get('calling_ae')} → "
            f"{a.get('called_ae')}, {a['client']} → {a['server']}, {w.frames} frames, "
            f"{w.payload_bytes} TCP payload bytes"
        )
        if conn is not None:
            lines += walk_lines(conn)
        if w.no_checksum:
            lines.append(
                f"  checksums not recomputed: {w.no_checksum} frames cut by the snap length"
            )
        if w.other_link:
            lines.append(f"  not written: {w.other_link} frames of another link type")
    return folder.readme("PHI-scrubbed evidence written by dicomsniffd analyze --evidence", lines)


def walk_lines(conn: Connection) -> list[str]:
    lines = []
    for name, d in zip(("requestor → acceptor", "acceptor → requestor"), conn.dirs, strict=True):
        w = d.walker
        if w is None:
            continue
        s = w.stats
        line = (
            f"  {name}: {s.pdus} PDUs, {s.command_fragments} command fragments kept, "
            f"{s.dataset_fragments} data-set fragments ({s.dataset_bytes} bytes) scrubbed, "
            f"{w.keep.kept_bytes} bytes kept"
        )
        if s.user_identity_fields:
            line += f", {s.user_identity_fields} user identity values scrubbed"
        lines.append(line)
        if d.base is None:
            lines.append(f"  {name}: SYN not captured: every payload byte scrubbed")
        elif s.lost_at is not None:
            lines.append(
                f"  {name}: walk lost its place at stream byte {s.lost_at} "
                f"({s.lost_reason}): every byte from there on scrubbed"
            )
        if d.unplaced:
            lines.append(f"  {name}: {d.unplaced} segments could not be placed: scrubbed whole")
    return lines


def for_analyze(
    directory: str,
    summary: Mapping[str, Any],
    files: Sequence[str],
    *,
    every: bool = False,
    numbers: Sequence[int] = (),
) -> tuple[str, dict[str, Any]]:
    """``analyze --evidence``: choose from the summary (``Summary.to_dict``), write, and
    return the one line that tells the user what was written, and what the summary and
    the report list of it (``capture.evidence``: the directory and one row per file)."""
    chosen = choose(
        summary.get("associations", []),
        summary.get("protocol_errors_by_flow", {}),
        every=every,
        numbers=numbers,
    )
    written = write_evidence(files, chosen, directory)
    listed = {
        "directory": directory,
        "readme": folder.README,
        "files": [
            {
                "file": w.name,
                "flow_id": w.association.get("flow_id"),
                "calling_ae": w.association.get("calling_ae"),
                "called_ae": w.association.get("called_ae"),
                "frames": w.frames,
                "bytes": w.bytes,
            }
            for w in written
        ],
    }
    if not written:
        return (
            f"evidence: no association with a problem, nothing written to {directory} but "
            "its README (--evidence-all writes every association)"
        ), listed
    return (
        f"evidence: {len(written)} scrubbed pcap(s) written to {directory} "
        f"({folder.README} says what was scrubbed)"
    ), listed
