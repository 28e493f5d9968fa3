"""Configuration loading and validation: defaults, every constraint, messages, overrides."""

from __future__ import annotations

import dataclasses
import struct
import subprocess
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomsniffd.config import (
    DEFAULT_BPF,
    Config,
    ConfigError,
    apply_overrides,
    config_from_mapping,
    dump_config,
    load_config,
    parse_listen,
    to_mapping,
)
from dicomsniffd.config import rules as config_module

DOCUMENTED = Path(__file__).resolve().parent.parent / "config" / "dicomsniffd.yaml"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "dicomsniffd.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def error_of(data: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(data, "test.yaml")
    return info.value


def key_paths(cls: type, prefix: str = "") -> set[str]:
    paths = set()
    for name, hint in typing.get_type_hints(cls).items():
        path = prefix + name
        paths |= key_paths(hint, path + ".") if dataclasses.is_dataclass(hint) else {path}
    return paths


def yaml_key_paths(data: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in data.items():
        path = prefix + key
        paths |= yaml_key_paths(value, path + ".") if isinstance(value, dict) else {path}
    return paths


# --- the documented file and the defaults ------------------------------------------------


def test_documented_file_yields_exactly_the_defaults() -> None:
    assert load_config(str(DOCUMENTED)) == Config()
    assert load_config(None) == Config()


def test_documented_file_lists_every_key() -> None:
    # equality with the defaults alone would not notice a key missing from the file
    raw = yaml.safe_load(DOCUMENTED.read_text(encoding="utf-8"))
    assert yaml_key_paths(raw) == key_paths(Config)


def test_documented_file_explains_the_vlan_filter() -> None:
    text = DOCUMENTED.read_text(encoding="utf-8")
    assert "QinQ" in text and "802.1Q" in text and 'plain "tcp" is not enough' in text


def test_every_constraint_names_a_real_key() -> None:
    assert set(config_module._SPECS) <= key_paths(Config)


def _pcap(frame: bytes) -> bytes:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # DLT_EN10MB
    return header + struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame


def _ethernet_tcp(tags: list[int]) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", 40000, 104, 1, 0, 0x50, 0x02, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, b"\n\0\0\1", b"\n\0\0\2")
    vlan = b"".join(struct.pack("!HH", tpid, 10) for tpid in tags)
    return b"\0\x11\x22\x33\x44\x55\0\x66\x77\x88\x99\xaa" + vlan + b"\x08\x00" + ip + tcp


@pytest.mark.parametrize(
    "tags",
    [[], [0x8100], [0x8100, 0x8100], [0x88A8, 0x8100]],
    ids=["untagged", "802.1q", "qinq", "qinq-88a8"],
)
def test_default_bpf_matches_tagged_tcp(tmp_path: Path, tags: list[int]) -> None:
    capture = tmp_path / "frame.pcap"
    capture.write_bytes(_pcap(_ethernet_tcp(tags)))
    result = subprocess.run(
        ["tcpdump", "-nr", str(capture), DEFAULT_BPF], capture_output=True, text=True, check=True
    )
    assert len(result.stdout.splitlines()) == 1


# --- every constraint's error path -------------------------------------------------------

BAD_VALUES = [
    # (mapping, key path in the message, fragments of "what is allowed")
    ({"capture": {"interface": ""}}, "capture.interface", "interface name"),
    ({"capture": {"interface": "eth0 eth1"}}, "capture.interface", "no spaces"),
    ({"capture": {"interface": "a" * 16}}, "capture.interface", "1 to 15 characters"),
    ({"capture": {"bpf": "  "}}, "capture.bpf", "non-empty BPF"),
    ({"capture": {"snaplen": 63}}, "capture.snaplen", "from 64 to 262144"),
    ({"capture": {"snaplen": 262145}}, "capture.snaplen", "from 64 to 262144"),
    ({"capture": {"buffer_size_mb": 0}}, "capture.buffer_size_mb", "from 1 to 2047"),
    ({"capture": {"buffer_size_mb": 2048}}, "capture.buffer_size_mb", "from 1 to 2047"),
    ({"capture": {"timeout_ms": 0}}, "capture.timeout_ms", "from 1 to 60000"),
    ({"capture": {"batch_size": 0}}, "capture.batch_size", "from 1 to 65536"),
    ({"capture": {"workers": 0}}, "capture.workers", "from 1 to 64"),
    ({"capture": {"workers": 65}}, "capture.workers", "from 1 to 64"),
    ({"dicom": {"ports": [104, 0]}}, "dicom.ports[1]", "port from 1 to 65535"),
    ({"dicom": {"ports": [65536]}}, "dicom.ports[0]", "port from 1 to 65535"),
    ({"dicom": {"ports": [104, 104]}}, "dicom.ports", "distinct"),
    (
        {"dicom": {"ports": [], "detect_any_port": False}},
        "dicom.ports",
        "at least one port when detect_any_port is false",
    ),
    ({"dicom": {"max_command_bytes": 0}}, "dicom.max_command_bytes", ">= 1"),
    ({"dicom": {"max_association_pdu_bytes": -1}}, "dicom.max_association_pdu_bytes", ">= 1"),
    ({"flows": {"capacity": -5}}, "flows.capacity", "an integer >= 1"),
    ({"flows": {"idle_timeout_s": 0}}, "flows.idle_timeout_s", "> 0"),
    ({"flows": {"closed_timeout_s": -1.5}}, "flows.closed_timeout_s", "> 0"),
    ({"flows": {"syn_timeout_s": 0.0}}, "flows.syn_timeout_s", "> 0"),
    ({"flows": {"max_out_of_order_segments": 0}}, "flows.max_out_of_order_segments", ">= 1"),
    ({"flows": {"max_out_of_order_bytes": 0}}, "flows.max_out_of_order_bytes", ">= 1"),
    ({"flows": {"memcap_bytes": 0}}, "flows.memcap_bytes", ">= 1"),
    ({"flows": {"duplicate_window_s": -0.1}}, "flows.duplicate_window_s", "from 0 to 1"),
    ({"flows": {"duplicate_window_s": 2}}, "flows.duplicate_window_s", "from 0 to 1"),
    ({"transactions": {"timeout_s": 0}}, "transactions.timeout_s", "> 0"),
    (
        {"transactions": {"max_pending_per_association": 0}},
        "transactions.max_pending_per_association",
        ">= 1",
    ),
    ({"metrics": {"listen": "0.0.0.0"}}, "metrics.listen", "HOST:PORT"),
    ({"metrics": {"listen": "0.0.0.0:0"}}, "metrics.listen", "port from 1 to 65535"),
    ({"metrics": {"listen": "0.0.0.0:65536"}}, "metrics.listen", "port from 1 to 65535"),
    ({"metrics": {"listen": "0.0.0.0:http"}}, "metrics.listen", "HOST:PORT"),
    ({"metrics": {"listen": ":9104"}}, "metrics.listen", "HOST:PORT"),
    ({"metrics": {"listen": "::1:9104"}}, "metrics.listen", "[::]:9104"),
    ({"metrics": {"listen": "[::1]9104"}}, "metrics.listen", "HOST:PORT"),
    ({"metrics": {"listen": "[nothex]:9104"}}, "metrics.listen", "HOST:PORT"),
    ({"metrics": {"listen": "300.1.1.1:9104"}}, "metrics.listen", "HOST:PORT"),
    ({"metrics": {"listen": "bad_host:9104"}}, "metrics.listen", "HOST:PORT"),
    ({"metrics": {"latency_buckets": []}}, "metrics.latency_buckets", "non-empty"),
    ({"metrics": {"latency_buckets": [1, 2, 2]}}, "metrics.latency_buckets", "strictly increasing"),
    ({"metrics": {"duration_buckets": [5, 1]}}, "metrics.duration_buckets", "strictly increasing"),
    ({"metrics": {"size_buckets": [0, 1]}}, "metrics.size_buckets[0]", "a number > 0"),
    ({"metrics": {"latency_buckets": [1, -2]}}, "metrics.latency_buckets[1]", "a number > 0"),
    ({"metrics": {"max_ae_titles": 0}}, "metrics.max_ae_titles", ">= 1"),
    ({"metrics": {"max_servers": 0}}, "metrics.max_servers", ">= 1"),
    ({"metrics": {"max_sop_classes": 0}}, "metrics.max_sop_classes", ">= 1"),
    ({"metrics": {"tls": {"cert_file": "c.pem"}}}, "metrics.tls.key_file", "when cert_file is set"),
    ({"metrics": {"tls": {"key_file": "k.pem"}}}, "metrics.tls.cert_file", "when key_file is set"),
    (
        {"metrics": {"tls": {"client_ca_file": "ca.pem"}}},
        "metrics.tls.cert_file",
        "when client_ca_file is set",
    ),
    ({"event_log": {"path": "a\x00b"}}, "event_log.path", "a file path"),
    ({"event_log": {"max_bytes": 1_048_575}}, "event_log.max_bytes", ">= 1048576 (1 MiB)"),
    ({"event_log": {"backups": -1}}, "event_log.backups", "from 0 to 100"),
    ({"event_log": {"backups": 101}}, "event_log.backups", "from 0 to 100"),
    ({"logging": {"level": "verbose"}}, "logging.level", "one of debug, info, warning, error"),
    ({"logging": {"level": "INFO"}}, "logging.level", "one of debug, info, warning, error"),
    ({"logging": {"format": "xml"}}, "logging.format", "one of text, json"),
]


@pytest.mark.parametrize(("data", "key", "allowed"), BAD_VALUES, ids=[k for _, k, _ in BAD_VALUES])
def test_constraint_violation_message(data: dict, key: str, allowed: str) -> None:
    err = error_of(data)
    message = str(err)
    assert message.startswith(f"test.yaml: {key}: ")
    assert "is not allowed: expected " in message
    assert allowed in message
    assert "\n" not in message
    assert err.key == key


def test_message_shows_the_bad_value_as_written() -> None:
    assert str(error_of({"flows": {"capacity": -5}})) == (
        "test.yaml: flows.capacity: -5 is not allowed: expected an integer >= 1"
    )
    assert '"verbose" is not allowed' in str(error_of({"logging": {"level": "verbose"}}))


@pytest.mark.parametrize(
    "listen",
    [
        "0.0.0.0:9104",
        "127.0.0.1:1",
        "[::]:9104",
        "[::1]:65535",
        "localhost:9104",
        "mon-1.example.org:80",
    ],
)
def test_valid_listen_addresses(listen: str) -> None:
    assert config_from_mapping({"metrics": {"listen": listen}}, "t").metrics.listen == listen


def test_parse_listen_splits_host_and_port() -> None:
    assert parse_listen("[::]:9104") == ("::", 9104)
    assert parse_listen("0.0.0.0:9104") == ("0.0.0.0", 9104)
    with pytest.raises(ValueError):
        parse_listen("::1:9104")


def test_tls_complete_is_accepted() -> None:
    tls = {"cert_file": "c.pem", "key_file": "k.pem", "client_ca_file": "ca.pem"}
    assert (
        config_from_mapping({"metrics": {"tls": tls}}, "t").metrics.tls.client_ca_file == "ca.pem"
    )


def test_empty_ports_allowed_when_any_port_detection_is_on() -> None:
    assert config_from_mapping({"dicom": {"ports": []}}, "t").dicom.ports == ()


# --- unknown keys ------------------------------------------------------------------------


def test_unknown_key_suggests_the_closest() -> None:
    message = str(error_of({"capture": {"interfce": "eth0"}}))
    assert message.startswith(
        "test.yaml: unknown key capture.interfce (did you mean capture.interface?)"
    )
    assert "; allowed: interface, bpf, snaplen," in message


def test_unknown_section_suggests_the_closest() -> None:
    assert "(did you mean capture?)" in str(error_of({"Capture": {}}))


def test_key_in_the_wrong_section_points_to_the_right_one() -> None:
    message = str(error_of({"capture": {"listen": "0.0.0.0:1"}}))
    assert "unknown key capture.listen (did you mean metrics.listen?)" in message


def test_unknown_key_without_a_close_match() -> None:
    message = str(error_of({"logging": {"zzz": 1}}))
    assert "did you mean" not in message
    assert message.endswith("allowed: level, format")


def test_non_string_key_is_an_unknown_key() -> None:
    assert "unknown key capture.5" in str(error_of({"capture": {5: 1}}))


# --- types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key", "allowed"),
    [
        (
            {"capture": {"workers": True}},
            "capture.workers",
            "an integer from 1 to 64",
        ),  # bool != int
        ({"capture": {"snaplen": 1500.0}}, "capture.snaplen", "an integer"),
        ({"capture": {"snaplen": "65535"}}, "capture.snaplen", "an integer"),
        ({"capture": {"promiscuous": 1}}, "capture.promiscuous", "true or false"),
        ({"capture": {"promiscuous": "yes please"}}, "capture.promiscuous", "true or false"),
        ({"flows": {"idle_timeout_s": False}}, "flows.idle_timeout_s", "a number of seconds"),
        ({"flows": {"idle_timeout_s": "10s"}}, "flows.idle_timeout_s", "a number of seconds"),
        ({"flows": {"idle_timeout_s": float("inf")}}, "flows.idle_timeout_s", "a number"),
        ({"flows": {"idle_timeout_s": float("nan")}}, "flows.idle_timeout_s", "a number"),
        ({"flows": {"idle_timeout_s": 10**400}}, "flows.idle_timeout_s", "a number"),
        ({"capture": {"interface": False}}, "capture.interface", "quote the value"),
        ({"capture": {"bpf": 5}}, "capture.bpf", "BPF"),
        ({"dicom": {"ports": 104}}, "dicom.ports", "a list of distinct TCP ports"),
        ({"dicom": {"ports": [104, "11112"]}}, "dicom.ports[1]", "a TCP port"),
        ({"dicom": {"ports": [True]}}, "dicom.ports[0]", "a TCP port"),
        ({"metrics": {"size_buckets": [1, "2"]}}, "metrics.size_buckets[1]", "a number > 0"),
        ({"metrics": {"listen": 9104}}, "metrics.listen", "HOST:PORT"),
        ({"metrics": {"listen": ["::"]}}, "metrics.listen", "quote the value"),
        ({"capture": "eth0"}, "capture", "a mapping with the keys interface, bpf"),
        ({"metrics": {"tls": []}}, "metrics.tls", "a mapping with the keys cert_file"),
    ],
)
def test_wrong_type(data: dict, key: str, allowed: str) -> None:
    message = str(error_of(data))
    assert message.startswith(f"test.yaml: {key}: ")
    assert allowed in message


def test_top_level_must_be_a_mapping() -> None:
    assert "top level: [1, 2] is not allowed: expected a mapping" in str(error_of([1, 2]))


def test_int_is_accepted_for_float_and_converted() -> None:
    cfg = config_from_mapping(
        {"flows": {"idle_timeout_s": 60}, "metrics": {"latency_buckets": [1, 2.5]}}, "t"
    )
    assert cfg.flows.idle_timeout_s == 60.0 and isinstance(cfg.flows.idle_timeout_s, float)
    assert cfg.metrics.latency_buckets == (1.0, 2.5)
    assert all(isinstance(b, float) for b in cfg.metrics.latency_buckets)


def test_lists_become_tuples() -> None:
    cfg = config_from_mapping({"dicom": {"ports": [104]}}, "t")
    assert cfg.dicom.ports == (104,)


# --- files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "\n", "# only comments\n", "---\n", "capture:\nmetrics:\n  tls:\n"]
)
def test_empty_file_or_sections_give_defaults(tmp_path: Path, text: str) -> None:
    assert load_config(write(tmp_path, text)) == Config()


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "capture:\n  interface: eth1\n"))
    assert cfg == dataclasses.replace(
        Config(), capture=dataclasses.replace(Config().capture, interface="eth1")
    )


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "capture:\n  interface: eth0\n  bpf: [tcp\nflows:\n  capacity: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:")
    assert "YAML syntax error" in message and "\n" not in message
    assert info.value.line is not None and 3 <= info.value.line <= 5


def test_yaml_tab_indentation_error_line(tmp_path: Path) -> None:
    path = write(tmp_path, "capture:\n  interface: eth0\n\tworkers: 2\n")
    with pytest.raises(ConfigError, match=r":3: column 1: YAML syntax error"):
        load_config(path)


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "capture:\n  workers: 2\n  workers: 4\n")
    with pytest.raises(ConfigError, match=r":3: .*duplicate key 'workers'"):
        load_config(path)


def test_value_error_in_file_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "# comment\nflows:\n  idle_timeout_s: 5.0\n  capacity: -5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (
        str(info.value) == f"{path}:4: flows.capacity: -5 is not allowed: expected an integer >= 1"
    )


def test_list_item_error_in_file_names_the_item_line(tmp_path: Path) -> None:
    path = write(tmp_path, "dicom:\n  ports:\n    - 104\n    - 0\n")
    with pytest.raises(ConfigError, match=r":4: dicom\.ports\[1\]: 0 is not allowed"):
        load_config(path)


def test_unknown_key_in_file_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "capture:\n  interface: eth0\n  snaplne: 100\n")
    with pytest.raises(
        ConfigError, match=r":3: unknown key capture\.snaplne \(did you mean capture\.snaplen\?\)"
    ):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config file: No such file"):
        load_config(path)


def test_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"capture:\n  interface: \xe9th0\n")
    with pytest.raises(ConfigError, match=r"latin1\.yaml:2: not UTF-8 text"):
        load_config(str(path))


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "capture: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="YAML syntax error"):
        load_config(path)


def test_self_referencing_alias_does_not_hang(tmp_path: Path) -> None:
    path = write(tmp_path, "dicom:\n  ports: &a [1, *a]\n")
    with pytest.raises(ConfigError, match=r"dicom\.ports\[1\]"):
        load_config(path)


# --- command-line overrides --------------------------------------------------------------


def test_overrides_apply() -> None:
    cfg = apply_overrides(
        Config(), interface="eth1", bpf="tcp port 104", listen="[::]:9200", workers=4
    )
    assert cfg.capture.interface == "eth1"
    assert cfg.capture.bpf == "tcp port 104"
    assert cfg.metrics.listen == "[::]:9200"
    assert cfg.capture.workers == 4
    assert cfg.flows == Config().flows


def test_override_none_means_flag_not_given() -> None:
    assert (
        apply_overrides(Config(), interface=None, bpf=None, listen=None, workers=None) == Config()
    )


def test_override_accepts_integer_text() -> None:
    assert apply_overrides(Config(), workers="8").capture.workers == 8


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("workers", 0, "--workers: 0 is not allowed: expected an integer from 1 to 64"),
        ("workers", "many", '--workers: "many" is not allowed: expected an integer from 1 to 64'),
        ("workers", True, "--workers: true is not allowed"),
        ("listen", "9104", '--listen: "9104" is not allowed: expected HOST:PORT'),
        ("interface", "", '--interface: "" is not allowed: expected a network interface name'),
        ("bpf", " ", '--bpf: " " is not allowed: expected a non-empty BPF filter expression'),
    ],
)
def test_override_errors_name_the_flag(flag: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(Config(), **{flag: value})
    assert str(info.value).startswith(expected)
    assert info.value.key == f"--{flag}"


def test_unknown_override_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        apply_overrides(Config(), snaplen=10)


# --- dump_config -------------------------------------------------------------------------


def custom_config() -> Config:
    data = {
        "capture": {"interface": "no", "bpf": "tcp port 104 and host 10.0.0.1", "workers": 4},
        "dicom": {"ports": [104], "keep_instance_uids": True},
        "flows": {"idle_timeout_s": 1e-05, "duplicate_window_s": 0},
        "metrics": {
            "listen": "[::]:9104",
            "size_buckets": [1, 2.5, 1e12],
            "tls": {"cert_file": "/etc/ssl/c.pem", "key_file": "/etc/ssl/k: p.pem"},
        },
        "event_log": {"path": "/var/log/dicomsniffd/events.jsonl", "backups": 0},
        "logging": {"level": "debug", "format": "json"},
    }
    return config_from_mapping(data, "t")


@pytest.mark.parametrize("cfg", [Config(), custom_config()], ids=["defaults", "custom"])
def test_dump_config_round_trip(tmp_path: Path, cfg: Config) -> None:
    text = dump_config(cfg)
    assert config_from_mapping(yaml.safe_load(text), "dump") == cfg
    assert load_config(write(tmp_path, text)) == cfg


def test_dump_config_is_readable_yaml() -> None:
    text = dump_config(Config())
    assert text.startswith("capture:\n  interface: any\n")
    assert "  ports: [104, 11112, 2761, 2762, 4242]\n" in text
    assert yaml_key_paths(yaml.safe_load(text)) == key_paths(Config)


def test_to_mapping_matches_the_documented_file() -> None:
    raw = yaml.safe_load(DOCUMENTED.read_text(encoding="utf-8"))
    assert to_mapping(Config()) == raw


# --- fuzzing: nothing but ConfigError ----------------------------------------------------

ALL_NAMES = sorted(
    {p.split(".")[-1] for p in key_paths(Config)} | {f.name for f in dataclasses.fields(Config)}
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["any", "eth0", "0.0.0.0:9104", "[::]:1", "info", "json", "tcp", ""]),
    st.dates(),
    st.binary(max_size=5),
)
keys = st.one_of(
    st.sampled_from(ALL_NAMES), st.text(max_size=10), st.integers(), st.none(), st.booleans()
)
nested = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)


def leaf_hint(path: list[str]) -> Any:
    cls: Any = Config
    for part in path:
        cls = typing.get_type_hints(cls)[part]
    return cls


def plausible(hint: Any) -> st.SearchStrategy:
    """Values of the right type and near the allowed ranges, so many documents are valid."""
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(min_value=0, max_value=2_000_000)
    if hint is float:
        return st.floats(min_value=0, max_value=2, allow_nan=False) | st.integers(0, 10**6)
    if hint is str:
        return st.text(min_size=1, max_size=15) | st.sampled_from(["eth0", "127.0.0.1:1", "info"])
    item = typing.get_args(hint)[0]
    return st.sets(st.integers(1, 70_000), max_size=6).map(sorted) | st.lists(plausible(item))


@st.composite
def mutated_defaults(draw: st.DrawFn) -> dict:
    """The default mapping with a few leaves replaced: near-valid documents, many valid."""
    data = to_mapping(Config())
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        path = draw(st.sampled_from(sorted(key_paths(Config)))).split(".")
        target = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = draw(plausible(leaf_hint(path)) | nested)
    return data


def check_only_config_errors(data: Any) -> None:
    try:
        cfg = config_from_mapping(data, "fuzz")
    except ConfigError as err:
        assert "\n" not in str(err) and str(err).startswith("fuzz: ")
        return
    # whatever is accepted must survive the dump/load round trip unchanged
    assert config_from_mapping(yaml.safe_load(dump_config(cfg)), "dump") == cfg


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(nested, st.dictionaries(keys, nested, max_size=8)))
def test_random_mappings_raise_only_config_error(data: Any) -> None:
    check_only_config_errors(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_defaults())
def test_mutated_defaults_raise_only_config_error(data: dict) -> None:
    check_only_config_errors(data)


@settings(
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.text(alphabet=st.sampled_from("capture:ifc \n\t-[]{}&*!|>'\"#%@`0123456789.,"), max_size=80)
)
def test_random_file_text_raises_only_config_error(tmp_path: Path, text: str) -> None:
    try:
        load_config(write(tmp_path, text))
    except ConfigError as err:
        assert "\n" not in str(err)


def test_whole_list_error_in_file_names_the_key_line(tmp_path: Path) -> None:
    path = write(tmp_path, "dicom:\n  ports:\n    - 104\n    - 104\n")
    with pytest.raises(ConfigError, match=r":2: dicom\.ports: \[104, 104\] is not allowed"):
        load_config(path)


def test_cross_key_error_in_file_names_the_section_line(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  listen: 0.0.0.0:1\n  tls:\n    cert_file: c.pem\n")
    with pytest.raises(ConfigError, match=r":3: metrics\.tls\.key_file: \"\" is not allowed"):
        load_config(path)
