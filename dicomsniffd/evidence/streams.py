"""The selected connections of a capture: frames placed by sequence number, each
direction's bytes walked in order.

A ``Tracker`` is fed every frame of a capture in file order. Frames of a selected
(client, server) address pair are placed: which connection (a new SYN from the client
with a new ISN starts a new one, as a reused port does), which direction, and at which
stream offset the payload starts (sequence numbers relative to the SYN's, unwrapped past
4 GiB). Fed the same frames twice, it places them the same way both times: the first pass
walks the streams (``walk=True``), the second writes the scrubbed frames with what the
first learnt. Out-of-order and retransmitted segments map by sequence number; a direction
whose SYN was not captured cannot be placed and is scrubbed whole.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Iterable

from dicomsniffd.evidence.frames import TCP_ACK, TCP_SYN, TcpFrame
from dicomsniffd.evidence.padding import accepted_syntaxes, paddings
from dicomsniffd.evidence.walker import KeepMap, PduWalker

Endpoint = tuple[bytes, int]
MAX_PENDING_BYTES = 8 << 20  # out-of-order bytes held per direction before a gap is declared
_MOD, _HALF = 1 << 32, 1 << 31


def parse_endpoint(text: str) -> Endpoint:
    """'10.0.0.1:104' or '[fd00::1]:104' (streams.context.format_endpoint) → (ip, port)."""
    host, _, port = text.rpartition(":")
    return ipaddress.ip_address(host.strip("[]")).packed, int(port)


class Direction:
    """One direction of one connection: its sequence-number origin and its walk."""

    __slots__ = (
        "base", "_hi", "walker", "_pending", "_heap", "_pending_bytes", "unplaced", "padding",
        "max_pending",
    )  # fmt: skip

    def __init__(self, walk: bool, max_pending: int = MAX_PENDING_BYTES) -> None:
        self.max_pending = max_pending
        self.base: int | None = None  # ISN + 1, from the SYN
        self._hi = 0
        self.walker = PduWalker() if walk else None
        self._pending: dict[int, bytes] = {}
        self._heap: list[int] = []
        self._pending_bytes = 0
        self.unplaced = 0  # payload-carrying frames that could not be placed
        self.padding = KeepMap()  # element headers over the data sets (padding.paddings)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def offset(self, seq: int) -> int | None:
        """The stream offset of ``seq`` (None before a SYN was seen)."""
        if self.base is None:
            return None
        delta = ((seq - self.base) - self._hi) % _MOD
        if delta >= _HALF:
            delta -= _MOD
        at = self._hi + delta
        if at > self._hi:
            self._hi = at
        return at if at >= 0 else None

    def walk(self, at: int, payload: bytes) -> None:
        walker = self.walker
        if walker is None or not payload:
            return
        if at + len(payload) <= walker.pos:
            return  # already walked: a retransmission or a duplicate
        if at <= walker.pos:
            walker.feed(payload[walker.pos - at :])
            self._drain(force=False)
            return
        if len(payload) > len(self._pending.get(at, b"")):
            if at not in self._pending:
                heapq.heappush(self._heap, at)
            self._pending_bytes += len(payload) - len(self._pending.get(at, b""))
            self._pending[at] = payload
        if self._pending_bytes > self.max_pending:
            self._drain(force=True, limit=1)
            self._drain(force=False)

    def _drain(self, force: bool, limit: int | None = None) -> None:
        """Feed held segments that now continue the stream; ``force``: declare the bytes
        before the lowest one missing (``limit`` segments at most)."""
        walker = self.walker
        assert walker is not None
        done = 0
        while self._heap and (limit is None or done < limit):
            at = self._heap[0]
            if at > walker.pos and not force:
                return
            heapq.heappop(self._heap)
            payload = self._pending.pop(at)
            self._pending_bytes -= len(payload)
            if at > walker.pos:
                walker.gap(at - walker.pos)
            if at + len(payload) > walker.pos:
                walker.feed(payload[walker.pos - at :])
            done += 1

    def finish(self) -> None:
        """The capture ended: what is still held follows gaps."""
        if self.walker is not None:
            self._drain(force=True)


class Connection:
    """One TCP connection between a selected client and server."""

    __slots__ = ("client", "server", "index", "client_isn", "dirs", "first_ts", "last_ts", "frames")

    def __init__(
        self,
        client: Endpoint,
        server: Endpoint,
        index: int,
        walk: bool,
        max_pending: int = MAX_PENDING_BYTES,
    ) -> None:
        self.client, self.server, self.index = client, server, index
        self.client_isn: int | None = None
        # client→server, server→client
        self.dirs = (Direction(walk, max_pending), Direction(walk, max_pending))
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.frames = 0

    def lay_out_padding(self) -> None:
        """Both directions walked: the AC (acceptor → requestor) gives the syntaxes."""
        walkers = [d.walker for d in reversed(self.dirs) if d.walker is not None]
        ac = next((w.associate_ac for w in walkers if w.associate_ac is not None), None)
        syntaxes = accepted_syntaxes(ac)
        for d in self.dirs:
            if d.walker is not None:
                d.padding = paddings(d.walker.datasets, syntaxes)


class Tracker:
    """Places the frames of the selected (client, server) pairs."""

    def __init__(
        self,
        pairs: Iterable[tuple[Endpoint, Endpoint]],
        *,
        walk: bool,
        max_pending: int = MAX_PENDING_BYTES,
    ) -> None:
        """``max_pending``: out-of-order bytes held per direction before the bytes
        missing before them are declared a gap."""
        self._walk = walk
        self._max_pending = max_pending
        self._forward: dict[tuple[bytes, int, bytes, int], tuple[Endpoint, Endpoint]] = {}
        self._reverse: dict[tuple[bytes, int, bytes, int], tuple[Endpoint, Endpoint]] = {}
        self.connections: dict[tuple[Endpoint, Endpoint], list[Connection]] = {}
        for client, server in pairs:
            self._forward[(*client, *server)] = (client, server)
            self._reverse[(*server, *client)] = (client, server)
            self.connections[(client, server)] = []

    def place(
        self, ts: float, tcp: TcpFrame, payload: bytes
    ) -> tuple[Connection, int, int | None] | None:
        """(connection, direction 0/1, stream offset of ``payload``, the frame's TCP
        payload, or None), or None for a frame of no selected pair."""
        key = (tcp.src, tcp.sport, tcp.dst, tcp.dport)
        pair = self._forward.get(key)
        direction = 0
        if pair is None:
            pair = self._reverse.get(key)
            direction = 1
            if pair is None:
                return None
        instances = self.connections[pair]
        syn = tcp.flags & TCP_SYN
        if not instances or (
            syn and not tcp.flags & TCP_ACK and instances[-1].client_isn not in (None, tcp.seq)
        ):
            instances.append(
                Connection(pair[0], pair[1], len(instances), self._walk, self._max_pending)
            )
        conn = instances[-1]
        if syn and direction == 0 and not tcp.flags & TCP_ACK:
            conn.client_isn = tcp.seq
        d = conn.dirs[direction]
        if syn and d.base is None:
            d.base = (tcp.seq + 1) % _MOD
        conn.frames += 1
        if conn.first_ts is None:
            conn.first_ts = ts
        conn.last_ts = ts
        seq = (tcp.seq + 1) % _MOD if syn else tcp.seq
        at = d.offset(seq)
        if tcp.payload_len:
            if at is None:
                d.unplaced += 1
            elif self._walk:
                d.walk(at, payload)
        return conn, direction, at

    def finish(self) -> None:
        """The capture ended: drain what is held, and lay out each data set's padding."""
        for instances in self.connections.values():
            for conn in instances:
                for d in conn.dirs:
                    d.finish()
                conn.lay_out_padding()
