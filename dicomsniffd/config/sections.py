"""The config sections: frozen dataclasses with the embedded defaults.

The YAML file (config/dicomsniffd.yaml) mirrors these sections key for key; what each key
allows is in ``rules``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_DICOM_PORTS = (104, 11112, 2761, 2762, 4242)
# A plain "tcp" misses 802.1Q and QinQ tagged frames: it reads the EtherType at the
# untagged offset. Each "vlan" keyword shifts the offsets of every primitive compiled after
# it by one tag, for the rest of the expression, so the tagged cases must be nested; the
# flat "tcp or (vlan and tcp) or (vlan and vlan and tcp)" looks for QinQ three tags deep
# and misses it (checked with tcpdump 4.99 / libpcap 1.10 on 802.1Q, 0x8100 and 0x88a8 QinQ).
DEFAULT_BPF = "tcp or (vlan and (tcp or (vlan and tcp)))"

DEFAULT_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
DEFAULT_DURATION_BUCKETS = (
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
)  # fmt: skip
DEFAULT_SIZE_BUCKETS = (
    1024, 16384, 65536, 262144, 524288, 1048576, 4194304, 16777216, 67108864, 268435456,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    interface: str = "any"
    bpf: str = DEFAULT_BPF
    snaplen: int = 65535
    promiscuous: bool = True
    buffer_size_mb: int = 64
    timeout_ms: int = 100
    immediate: bool = False
    batch_size: int = 512
    workers: int = 1


@dataclass(frozen=True, slots=True)
class DicomConfig:
    ports: tuple[int, ...] = DEFAULT_DICOM_PORTS
    detect_any_port: bool = True
    max_command_bytes: int = 65536  # a command set larger than this is a protocol error
    max_association_pdu_bytes: int = 65536  # A-ASSOCIATE-RQ/AC/RJ larger than this: error
    keep_instance_uids: bool = False  # SOP Instance UIDs in the event log only when true


@dataclass(frozen=True, slots=True)
class FlowsConfig:
    capacity: int = 100_000
    idle_timeout_s: float = 600.0
    closed_timeout_s: float = 10.0
    syn_timeout_s: float = 10.0  # SYN without SYN/ACK for this long: "unanswered"
    max_out_of_order_segments: int = 256  # per direction
    max_out_of_order_bytes: int = 1_048_576  # per direction
    memcap_bytes: int = 256 * 1_048_576  # all reassembly buffers together
    duplicate_window_s: float = 0.002  # same IP ID + seq + len within this = capture duplicate


@dataclass(frozen=True, slots=True)
class TransactionsConfig:
    timeout_s: float = 300.0
    max_pending_per_association: int = 1024


@dataclass(frozen=True, slots=True)
class TlsServerConfig:
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: str = "0.0.0.0:9104"
    latency_buckets: tuple[float, ...] = DEFAULT_LATENCY_BUCKETS
    duration_buckets: tuple[float, ...] = DEFAULT_DURATION_BUCKETS
    size_buckets: tuple[float, ...] = DEFAULT_SIZE_BUCKETS
    max_ae_titles: int = 200  # distinct calling/called AE label values; the rest -> "other"
    max_servers: int = 100  # distinct server="ip:port" label values; the rest -> "other"
    max_sop_classes: int = 200
    # Optional labels: off, the label stays (names and label sets are a stable contract)
    # but carries the value "all", for sites where per-modality series are too many.
    ae_title_labels: bool = True
    sop_class_label: bool = True
    tls: TlsServerConfig = field(default_factory=TlsServerConfig)


@dataclass(frozen=True, slots=True)
class EventLogConfig:
    path: str = ""  # empty: no event log
    max_bytes: int = 100 * 1_048_576
    backups: int = 5


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    format: str = "text"  # text | json


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    user: str = ""  # empty: "dicomsniffd" if that account exists, else "nobody"
    stall_after_s: float = 30.0  # /healthz fails when the capture loop is silent this long


EVIDENCE_TRIGGERS = ("abort", "reject", "failure", "unanswered", "protocol-violation")


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    """The flight recorder (README "Evidence for the vendor"): scrubbed pcaps of the
    associations that end badly."""

    directory: str = ""  # empty: no flight recorder (and no cost per packet)
    triggers: tuple[str, ...] = EVIDENCE_TRIGGERS
    max_bytes_per_association: int = 1_048_576  # memory one recording may hold
    max_memory_bytes: int = 128 * 1_048_576  # memory all recordings together may hold
    max_files: int = 100  # evidence files in the directory; the oldest go first
    max_directory_bytes: int = 1024 * 1_048_576


@dataclass(frozen=True, slots=True)
class Config:
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    dicom: DicomConfig = field(default_factory=DicomConfig)
    flows: FlowsConfig = field(default_factory=FlowsConfig)
    transactions: TransactionsConfig = field(default_factory=TransactionsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    event_log: EventLogConfig = field(default_factory=EventLogConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
