"""The clock offset between the two captures, and which point is upstream of which.

Two capture points rarely share a clock. A segment seen at both gives
``d = t_far - t_near = offset + delay`` when it travels from near to far, and
``offset - delay`` the other way. The fastest segments of the two directions bound the
offset from both sides; assuming the fastest trip took as long each way (the assumption
NTP makes), ``offset = (A + B) / 2`` and the minimum one-way delay ``(A - B) / 2``, where A
is the smallest ``d`` travelling near -> far and B the largest travelling far -> near.

Which way a direction travels is not known either: per connection, the orientation whose
minimum delay comes out non-negative is the right one (at most one can be positive).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Clock:
    """``offset``: far's clock minus near's (seconds); ``min_delay``: the fastest one-way
    trip between the points; ``how``: one sentence saying how it was estimated."""

    offset: float
    min_delay: float | None
    how: str
    samples: int

    def to_near(self, far_ts: float) -> float:
        """A far-point timestamp on the near point's clock."""
        return far_ts - self.offset


def orientation(c2s: Sequence[float], s2c: Sequence[float]) -> bool | None:
    """True: the client's data travels near -> far (near is on the client's side); False:
    the other way; None: not decidable from this connection (a direction without samples).
    ``c2s``/``s2c``: ``t_far - t_near`` of segments seen once at each point."""
    if not c2s or not s2c:
        return None
    near_first = (min(c2s) - max(s2c)) / 2
    far_first = (min(s2c) - max(c2s)) / 2
    return near_first >= far_first


def estimate(oriented: Sequence[tuple[bool | None, Sequence[float], Sequence[float]]]) -> Clock:
    """The offset from every connection's ``(orientation, c2s samples, s2c samples)``."""
    forward: list[float] = []  # d of segments travelling near -> far
    backward: list[float] = []
    for near_is_client, c2s, s2c in oriented:
        if near_is_client is None:
            continue
        if near_is_client:
            forward.extend(c2s)
            backward.extend(s2c)
        else:
            forward.extend(s2c)
            backward.extend(c2s)
    n = len(forward) + len(backward)
    if not forward or not backward:
        return Clock(
            0.0,
            None,
            "not estimated (no connection seen in both directions at both points): "
            "the clocks are taken as synchronised",
            n,
        )
    a, b = min(forward), max(backward)
    return Clock(
        (a + b) / 2,
        (a - b) / 2,
        "from the fastest segment of each direction, assuming it took as long both ways",
        n,
    )


def orient_alone(c2s: Sequence[float], s2c: Sequence[float], clock: Clock) -> bool:
    """The orientation of a connection that ``orientation`` could not decide: its samples
    against the global offset (later at far than the offset: travelling near -> far)."""
    samples = list(c2s) or [-x for x in s2c]
    if not samples:
        return True  # nothing to go by: NEAR is, by its name, nearer the client
    median = sorted(samples)[len(samples) // 2]
    return median >= (clock.offset if c2s else -clock.offset)
