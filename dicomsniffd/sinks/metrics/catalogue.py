"""The metric catalogue: every family on /metrics, in exposition order (DESIGN §4).

One entry per family: its name, type, label names, help text, the MetricsConfig field
holding a histogram's bucket bounds, and who fills it (``source``). Adding a metric
starts here; the store, both exposition writers and the tests read this table. The
names, types and labels are a contract with the users' dashboards and alerts: never
rename one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Key = tuple[str, ...]  # a series' label values, in the family's label order
# One worker's self statistics, as its pipeline reports them (Pipeline.self_stats):
# {"worker": "0", "packets": int, "bytes": int, "dropped": {"kernel": int, ...}, ...}
SelfStats = dict[str, Any]

Kind = Literal["counter", "gauge", "histogram"]
# Who fills a family:
#   store       MetricsStore's plain counters, fed by the sink calls (events, TCP facts)
#   self-stats  a key of the SelfStats dict each worker's pipeline reports (label "worker")
#   build       the versions of the running software (a constant 1)
#   daemon      the daemon's own collectors, after everything else (not in a MetricsStore)
Source = Literal["store", "self-stats", "build", "daemon"]

AE_LABELS = ("calling_ae", "called_ae")
_AE = "*ae"  # shorthand in the table below for the two AE labels


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family of the catalogue."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    buckets: str = ""  # histogram: the MetricsConfig field with its upper bounds
    source: Source = "store"
    stat: str = ""  # self-stats: the SelfStats key holding the value(s)


def _family(
    name: str, kind: Kind, labels: tuple[str, ...], help_text: str, buckets: str = ""
) -> Family:
    """A store family; ``*ae`` in ``labels`` stands for calling_ae, called_ae."""
    expanded: list[str] = []
    for label in labels:
        expanded.extend(AE_LABELS if label == _AE else (label,))
    return Family(name, kind, tuple(expanded), help_text, buckets)


def _self_stat(name: str, kind: Kind, stat: str, help_text: str, by: str = "") -> Family:
    """A per-worker family; ``by`` is the second label when the stat is a dict of counts."""
    labels = ("worker", by) if by else ("worker",)
    return Family(name, kind, labels, help_text, source="self-stats", stat=stat)


_CMD = (_AE, "command")

FAMILIES: tuple[Family, ...] = (
    _family("dicom_association_requests_total", "counter", (_AE,),
            "A-ASSOCIATE-RQ seen."),
    _family("dicom_association_rejects_total", "counter", (_AE, "result", "source", "reason"),
            "A-ASSOCIATE-RJ seen, by result, source and reason."),
    _family("dicom_association_aborts_total", "counter", (_AE, "source", "reason"),
            "A-ABORT seen, by source and reason."),
    _family("dicom_association_ends_total", "counter", (_AE, "how"),
            "Associations that ended, by how (released, aborted, reset, closed, timeout, "
            "capture-ended: still open when the capture or the daemon stopped)."),
    _family("dicom_associations_active", "gauge", (_AE,),
            "Associations requested and not yet ended."),
    _family("dicom_association_setup_seconds", "histogram", (_AE,),
            "A-ASSOCIATE-RQ to AC/RJ.", "latency_buckets"),
    _family("dicom_association_duration_seconds", "histogram", (_AE,),
            "A-ASSOCIATE-RQ to the end of the association.", "duration_buckets"),
    _family("dicom_presentation_contexts_total", "counter",
            (_AE, "abstract_syntax", "transfer_syntax", "result"),
            "Presentation contexts answered by the acceptor, by abstract syntax and result."),
    _family("dicom_dimse_requests_total", "counter", (_AE, "command", "sop_class"),
            "DIMSE requests seen."),
    _family("dicom_dimse_responses_total", "counter", (_AE, "command", "status", "status_class"),
            "DIMSE responses seen (pending ones included), by status."),
    _family("dicom_dimse_duration_seconds", "histogram", _CMD,
            "First packet of the request to the packet completing the final response.",
            "latency_buckets"),
    _family("dicom_dimse_request_transfer_seconds", "histogram", _CMD,
            "First to last packet of the request (network upload time of a C-STORE).",
            "latency_buckets"),
    _family("dicom_dimse_response_latency_seconds", "histogram", _CMD,
            "Request complete to the first response (the SCP's service time).",
            "latency_buckets"),
    _family("dicom_dimse_response_transfer_seconds", "histogram", _CMD,
            "First to last packet of the final response (long: split and waiting for an ACK).",
            "latency_buckets"),
    _family("dicom_dimse_dataset_bytes", "histogram", _CMD,
            "Size of the request data set (the response data set for N-GET).", "size_buckets"),
    _family("dicom_dimse_unanswered_total", "counter", _CMD,
            "Requests still open when the association ended or the transaction timed out."),
    _family("dicom_suboperations_total", "counter", (_AE, "command", "outcome"),
            "C-MOVE/C-GET sub-operations from the final response, by outcome."),
    _family("dicom_pdata_bytes_total", "counter", (_AE, "sender"),
            "P-DATA-TF bytes, by sender (requestor/acceptor)."),
    _family("dicom_tcp_retransmitted_segments_total", "counter", (_AE, "sender"),
            "TCP retransmissions on DICOM connections, by sender."),
    _family("dicom_tcp_zero_window_total", "counter", (_AE, "sender"),
            "TCP zero-window advertisements on DICOM connections, by sender."),
    _family("dicom_tcp_resets_total", "counter", (_AE, "sender"),
            "TCP resets on DICOM connections, by sender."),
    _family("dicom_tcp_handshake_rtt_seconds", "histogram", (_AE,),
            "SYN to SYN/ACK to ACK.", "latency_buckets"),
    _family("dicom_tcp_stalls_total", "counter", (_AE, "sender", "cause"),
            "Gaps in one side's data inside a DIMSE transfer (DESIGN §3), by the side whose "
            "data stalled and the cause (delayed-ack, zero-window, loss-recovery, "
            "sender-idle)."),
    _family("dicom_tcp_stall_seconds_total", "counter", (_AE, "sender", "cause"),
            "Seconds lost in those stalls, by sender and cause."),
    _family("dicom_capture_missed_bytes_total", "counter", (_AE, "sender"),
            "Bytes on DICOM connections the sniffer never saw."),
    _family("dicom_protocol_errors_total", "counter", (_AE, "kind"),
            "DICOM UL/DIMSE protocol errors and resynchronisations, by kind."),
    _family("dicom_protocol_violations_total", "counter", (_AE, "kind", "sender"),
            "PDUs and DIMSE messages that parse but break a PS3.8/PS3.7 rule (DESIGN 4b), "
            "by kind and the side that broke it."),
    _family("dicom_tcp_connection_failures_total", "counter", ("server", "reason"),
            "TCP connections to DICOM servers refused or unanswered."),
    _family("dicom_tls_connections_total", "counter", ("server", "outcome"),
            "TLS connections on DICOM ports, by handshake outcome."),
    _family("dicom_implementation_info", "gauge",
            ("ae", "side", "implementation_class_uid", "implementation_version_name"),
            "1 per AE and side: the Implementation Class UID and Version Name it last sent "
            "in an A-ASSOCIATE-RQ (requestor) or -AC (acceptor)."),
    _family("dicomsniffd_label_overflow_total", "counter", ("label",),
            "Label values folded into 'other' because a cardinality cap was reached."),
    _self_stat("dicomsniffd_packets_total", "counter", "packets", "Packets captured."),
    _self_stat("dicomsniffd_bytes_total", "counter", "bytes", "Bytes captured."),
    _self_stat("dicomsniffd_capture_dropped_packets_total", "counter", "dropped",
               "Packets dropped before the sniffer saw them (kernel buffer, interface).",
               by="where"),
    _self_stat("dicomsniffd_flows_active", "gauge", "flows_active",
               "TCP flows in the flow table."),
    _self_stat("dicomsniffd_flow_evictions_total", "counter", "evictions",
               "Flows evicted from the flow table, by reason.", by="reason"),
    _self_stat("dicomsniffd_reassembly_buffered_bytes", "gauge", "buffered_bytes",
               "Bytes held in out-of-order reassembly buffers."),
    # The flight recorder (evidence: section; docs/contract-changes.md). 0 when it is off.
    _self_stat("dicomsniffd_evidence_files_written_total", "counter", "evidence_files_written",
               "PHI-scrubbed evidence pcaps the flight recorder wrote."),
    _self_stat("dicomsniffd_evidence_written_bytes_total", "counter", "evidence_bytes_written",
               "Bytes of evidence files the flight recorder wrote."),
    _self_stat("dicomsniffd_evidence_suppressed_total", "counter", "evidence_suppressed",
               "Associations not recorded or not written, by reason (memory, "
               "association-budget, directory-budget, write-error, error).", by="reason"),
    _self_stat("dicomsniffd_evidence_files_removed_total", "counter", "evidence_files_removed",
               "Old evidence files removed to keep the directory within its budget."),
    _self_stat("dicomsniffd_evidence_memory_bytes", "gauge", "evidence_memory_bytes",
               "Bytes the flight recorder's recordings hold (headers and kept bytes)."),
    _self_stat("dicomsniffd_evidence_recordings", "gauge", "evidence_recordings",
               "Connections the flight recorder is recording now."),
    Family("dicomsniffd_build_info", "gauge", ("version", "pcapy_ng", "libpcap", "python"),
           "Versions of dicomsniffd and its capture stack.", source="build"),
    Family("dicomsniffd_config_reload_failures_total", "counter", (),
           "SIGHUP config reloads refused (the old config stayed in force).", source="daemon"),
)  # fmt: skip

BY_NAME: dict[str, Family] = {family.name: family for family in FAMILIES}
STORE_FAMILIES = tuple(family for family in FAMILIES if family.source == "store")
SELF_STATS_FAMILIES = tuple(family for family in FAMILIES if family.source == "self-stats")
BUILD_INFO = BY_NAME["dicomsniffd_build_info"]
CONFIG_RELOAD_FAILURES = BY_NAME["dicomsniffd_config_reload_failures_total"]
LABEL_OVERFLOW = "dicomsniffd_label_overflow_total"  # filled by the label caps (labels.py)
