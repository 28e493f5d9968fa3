"""Configuration: validated, frozen dataclasses with the embedded defaults.

- ``sections``: the dataclasses (one per YAML section) and the defaults;
- ``rules``: what each key allows (one table keyed by key path) and rules across keys;
- ``convert``: the walk that type-checks a parsed document against the dataclasses;
- ``errors``: ``ConfigError``, one line naming the key path, the bad value and what is allowed;
- ``load``: YAML file → Config (``load_config``), command-line flags, Config → YAML.
- ``yaml_text``: the PyYAML side of ``load`` (strict parsing, key lines, dumping), imported
  only when a file is read or YAML written, so that ``analyze FILE`` starts without it.

A new key: a field in ``sections``, its constraint in ``rules._SPECS``, its documentation
in config/dicomsniffd.yaml (tests/test_config.py checks that the file mirrors the sections).
"""

from __future__ import annotations

from dicomsniffd.config.errors import ConfigError
from dicomsniffd.config.load import (
    OVERRIDES,
    apply_overrides,
    config_from_mapping,
    dump_config,
    load_config,
    to_mapping,
)
from dicomsniffd.config.rules import parse_listen
from dicomsniffd.config.sections import (
    DEFAULT_BPF,
    DEFAULT_DICOM_PORTS,
    DEFAULT_DURATION_BUCKETS,
    DEFAULT_LATENCY_BUCKETS,
    DEFAULT_SIZE_BUCKETS,
    CaptureConfig,
    Config,
    DaemonConfig,
    DicomConfig,
    EventLogConfig,
    EvidenceConfig,
    FlowsConfig,
    LoggingConfig,
    MetricsConfig,
    TlsServerConfig,
    TransactionsConfig,
)

__all__ = [
    "DEFAULT_BPF",
    "DEFAULT_DICOM_PORTS",
    "DEFAULT_DURATION_BUCKETS",
    "DEFAULT_LATENCY_BUCKETS",
    "DEFAULT_SIZE_BUCKETS",
    "OVERRIDES",
    "CaptureConfig",
    "Config",
    "ConfigError",
    "DaemonConfig",
    "DicomConfig",
    "EventLogConfig",
    "EvidenceConfig",
    "FlowsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "TlsServerConfig",
    "TransactionsConfig",
    "apply_overrides",
    "config_from_mapping",
    "dump_config",
    "load_config",
    "parse_listen",
    "to_mapping",
]
