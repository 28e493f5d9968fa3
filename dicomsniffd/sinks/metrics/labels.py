"""Cardinality caps: the label values a MetricsStore admits (DESIGN §4, "bounded").

AE titles, ``server`` endpoints and SOP class keywords are admitted up to a configured
number of distinct values each; later ones are folded into ``other`` and every fold is
counted in ``dicomsniffd_label_overflow_total{label=...}``. Instance UIDs, patient data
and client addresses never become label values.
"""

from __future__ import annotations

from dicomsniffd.config import MetricsConfig
from dicomsniffd.names import is_standard_status, sop_class_keyword, status_hex
from dicomsniffd.sinks.metrics.catalogue import LABEL_OVERFLOW, Key

OTHER = "other"
UNKNOWN = "unknown"
ALL = "all"  # the value of an optional label that is switched off

# Labels with a cap: the overflow counter is always exported for them (at 0) so an alert
# on it has a series to look at.
CAPPED_LABELS = ("calling_ae", "called_ae", "server", "sop_class", "status")
# Distinct ``status`` values (0x....) admitted beyond the standard ones: the 16-bit value
# comes off the network, and every new one is a series per AE pair and command (a peer
# answering with random statuses made 65,536). The statuses of the standard tables and
# every 0xA7xx (out of resources: the alert rules and the dashboard select those by
# value) never take a slot, so a flood of odd values cannot hide them.
MAX_STATUS_LABELS = 256
# SOP class UIDs whose label value is remembered (the memo is emptied when full)
_SETTLED_UIDS = 1_024


class LabelCaps:
    """The capped label values, as methods of the store (a base class, not a member:
    the caps read ``self.config`` at call time, so a reload that swaps the store's
    config changes the caps, and an event handler reaches them in one lookup)."""

    config: MetricsConfig
    _values: dict[str, dict[Key, float]]

    def _init_caps(self) -> None:
        overflow = self._values[LABEL_OVERFLOW]
        for label in CAPPED_LABELS:
            overflow[(label,)] = 0
        # Distinct values admitted per capped label family; bounded by the caps.
        self._ae_seen: set[str] = set()
        self._servers_seen: set[str] = set()
        self._sop_seen: set[str] = set()
        self._status_seen: set[str] = set()
        # Label values that can no longer change (a standard status, or a value admitted
        # under its cap stays admitted): status -> label, SOP class UID -> label. Looked up
        # first, they spare the keyword lookup and the cap check of every later message.
        self._status_labels: dict[int | None, str] = {}
        self._sop_labels: dict[str, str] = {}

    def _capped(self, value: str, seen: set[str], cap: int, label: str) -> str:
        if value in seen:
            return value
        if len(seen) < cap:
            seen.add(value)
            return value
        self._values[LABEL_OVERFLOW][(label,)] = self._values[LABEL_OVERFLOW].get((label,), 0) + 1
        return OTHER

    def ae_label(self, title: str, label: str = "ae_title") -> str:
        """The metric label value for an AE title: the title while fewer than
        ``max_ae_titles`` distinct titles (calling and called together) have been seen,
        then ``other``; each fold into ``other`` counts once under ``label``."""
        if not self.config.ae_title_labels:
            return ALL
        if title in self._ae_seen:  # (never "unknown" or "other"): no _capped call
            return title
        if not title or title == UNKNOWN:
            return UNKNOWN
        if title == OTHER:
            return OTHER
        return self._capped(title, self._ae_seen, self.config.max_ae_titles, label)

    def server_label(self, server: str) -> str:
        """The ``server`` label value ("ip:port") under the ``max_servers`` cap.

        Idempotent: an already capped value (``other``) passes through uncounted, so the
        pipeline may hand either the raw endpoint or its label to the sinks."""
        if not server or server in (OTHER, UNKNOWN):
            return server or UNKNOWN
        return self._capped(server, self._servers_seen, self.config.max_servers, "server")

    def status_label(self, status: int | None) -> str:
        """A DIMSE status as a label value (``0xA700``): a standard one always, any other
        while fewer than MAX_STATUS_LABELS distinct others were seen, then ``other``."""
        settled = self._status_labels.get(status)
        if settled is not None:
            return settled
        text = status_hex(status)
        if not (text in self._status_seen or is_standard_status(status)):
            text = self._capped(text, self._status_seen, MAX_STATUS_LABELS, "status")
            if text == OTHER:
                return text  # folded: counted every time, never settled
        # bounded: the standard statuses, 256 of 0xA7xx and MAX_STATUS_LABELS others
        self._status_labels[status] = text
        return text

    def sop_class_label(self, uid: str, label: str = "sop_class") -> str:
        """Keyword of a SOP class UID (``private``/``unknown`` outside the dictionary),
        capped at ``max_sop_classes``; never the UID itself."""
        if not self.config.sop_class_label:
            return ALL
        settled = self._sop_labels.get(uid)
        if settled is not None:
            return settled
        keyword = sop_class_keyword(uid)
        if keyword not in (UNKNOWN, "private"):
            keyword = self._capped(keyword, self._sop_seen, self.config.max_sop_classes, label)
            if keyword == OTHER:
                return keyword  # folded: counted every time, never settled
        if len(self._sop_labels) >= _SETTLED_UIDS:  # UIDs come off the network
            self._sop_labels.clear()
        self._sop_labels[uid] = keyword
        return keyword
