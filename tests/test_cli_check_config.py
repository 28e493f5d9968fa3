"""`dicomsniffd check-config` refuses what `run` would refuse at start (BPF filter, TLS
files, listen host), says what it cannot check, prints an OK line; every `--help` has a
description, examples and the exit codes. Real subprocess runs of the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dicomsniffd.capture import BpfError
from dicomsniffd.config import DEFAULT_BPF, load_config
from dicomsniffd.daemon.reload import check_bpf

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dicomsniffd", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return cli("check-config", str(path))


def refused(result: subprocess.CompletedProcess) -> str:
    """The one error line of a refused config (exit 2, no traceback, nothing on stdout)."""
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dicomsniffd: error: "), lines
    return lines[0]


def self_signed(tmp_path: Path, name: str) -> tuple[str, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl CLI needed to make test certificates")
    cert, key = str(tmp_path / f"{name}.crt"), str(tmp_path / f"{name}.key")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-keyout", key, "-out", cert],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def tls_yaml(cert: str, key: str, ca: str = "") -> str:
    text = f"metrics:\n  listen: 127.0.0.1:19104\n  tls:\n    cert_file: {cert}\n"
    text += f"    key_file: {key}\n"
    return text + (f"    client_ca_file: {ca}\n" if ca else "")


# --- BPF ---------------------------------------------------------------------------------


def test_bpf_that_does_not_compile_is_refused(tmp_path: Path) -> None:
    line = refused(check(tmp_path, 'capture:\n  bpf: "tcp port"\n'))
    assert "c.yaml" in line and "capture.bpf" in line and "'tcp port'" in line
    assert "syntax error" in line


def test_bpf_is_compiled_for_the_link_type_of_the_interface(tmp_path: Path) -> None:
    # "any" is Linux cooked: libpcap has no vlan keyword there, the daemon would exit 2
    line = refused(check(tmp_path, 'capture:\n  interface: any\n  bpf: "vlan and tcp"\n'))
    assert "capture.bpf" in line and "Linux cooked" in line and "'any'" in line
    ok = check(tmp_path, 'capture:\n  interface: eth7\n  bpf: "vlan and tcp"\n')
    assert ok.returncode == 0, ok.stderr
    assert "compiles for Ethernet" in ok.stderr


def test_default_filter_passes_on_any_as_plain_tcp(tmp_path: Path) -> None:
    result = check(tmp_path, "capture:\n  interface: any\n")
    assert result.returncode == 0, result.stderr
    assert "compiles for Linux cooked SLL and Linux cooked SLL2" in result.stderr


@pytest.mark.parametrize("linktype", [113, 276])
def test_reload_check_accepts_the_default_filter_on_cooked_links(linktype: int) -> None:
    # SIGHUP's check compiles the filter as the handle installs it (plain tcp on "any")
    check_bpf(DEFAULT_BPF, linktype, 65535)
    with pytest.raises(BpfError):
        check_bpf("vlan and tcp", linktype, 65535)


# --- TLS ---------------------------------------------------------------------------------


def test_missing_tls_files_are_refused_by_name(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "server")
    line = refused(check(tmp_path, tls_yaml(str(tmp_path / "nope.crt"), key)))
    assert "metrics.tls.cert_file" in line and "nope.crt" in line and "No such file" in line
    line = refused(check(tmp_path, tls_yaml(cert, str(tmp_path / "nope.key"))))
    assert "metrics.tls.key_file" in line and "nope.key" in line
    line = refused(check(tmp_path, tls_yaml(cert, key, str(tmp_path / "nope-ca.crt"))))
    assert "metrics.tls.client_ca_file" in line and "nope-ca.crt" in line


def test_tls_files_that_do_not_load_are_refused_by_name(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "server")
    _, other_key = self_signed(tmp_path, "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    line = refused(check(tmp_path, tls_yaml(str(junk), key)))
    assert "metrics.tls.cert_file" in line and "junk.pem" in line
    line = refused(check(tmp_path, tls_yaml(cert, other_key)))
    assert "server.crt" in line and "other.key" in line and "mismatch" in line
    line = refused(check(tmp_path, tls_yaml(cert, key, str(junk))))
    assert "metrics.tls.client_ca_file" in line and "junk.pem" in line
    line = refused(check(tmp_path, tls_yaml(str(tmp_path), key)))  # a directory
    assert "metrics.tls.cert_file" in line and "directory" in line.lower()


def test_good_tls_files_pass(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "server")
    ca, _ = self_signed(tmp_path, "client")
    result = check(tmp_path, tls_yaml(cert, key, ca))
    assert result.returncode == 0, result.stderr
    assert "certificate, key and client CA load" in result.stderr


def test_run_names_the_missing_tls_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    cert, key = self_signed(tmp_path, "server")
    path.write_text(tls_yaml(cert, str(tmp_path / "gone.key")))
    line = refused(cli("run", "-c", str(path)))
    assert "metrics.tls.key_file" in line and "gone.key" in line


# --- listen host -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "listen,about",
    [
        ("bad_host:9104", "'bad_host' is not a host name"),
        ("bad_host:0", "'bad_host' is not a host name"),
        ("300.1.1.1:9104", "'300.1.1.1' is not an IPv4 address"),
        ("[nothex]:9104", "'nothex' in brackets is not an IPv6 address"),
        (":9104", "the host is empty"),
    ],
)
def test_bad_listen_host_gets_a_message_about_the_host(
    tmp_path: Path, listen: str, about: str
) -> None:
    line = refused(check(tmp_path, f'metrics:\n  listen: "{listen}"\n'))
    assert "metrics.listen" in line and about in line
    assert "port from 1 to 65535" not in line


def test_bad_listen_port_still_gets_the_port_message(tmp_path: Path) -> None:
    line = refused(check(tmp_path, 'metrics:\n  listen: "0.0.0.0:0"\n'))
    assert "port from 1 to 65535" in line


# --- success output ----------------------------------------------------------------------


def test_ok_line_and_what_is_not_checked(tmp_path: Path) -> None:
    result = cli("check-config", "config/dicomsniffd.yaml")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("OK: config/dicomsniffd.yaml: valid")
    assert any("not checked" in ln and "live interface" in ln for ln in lines)
    # stdout stays the effective config, loadable as it is
    effective = tmp_path / "effective.yaml"
    effective.write_text(result.stdout)
    assert yaml.safe_load(result.stdout)["capture"]["bpf"] == DEFAULT_BPF
    assert load_config(str(effective)) == load_config("config/dicomsniffd.yaml")


# --- --help ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "analyze", "check-config"])
def test_help_has_description_examples_and_exit_codes(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    text = result.stdout
    examples = text.split("examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(examples) == 2 and all(e.startswith(f"  dicomsniffd {command}") for e in examples)
    codes = text.split("exit codes:\n", 1)[1]
    assert "  0  " in codes and "  2  " in codes
    # the description comes before the options
    assert text.index("usage:") < text.index(".\n") < text.index("options:")


def test_missing_run_user_is_a_note_not_a_refusal(tmp_path: Path) -> None:
    # run refuses it only when started as root (as non-root the user is never looked up)
    result = check(tmp_path, "daemon:\n  user: nosuchuser42\n")
    assert result.returncode == 0, result.stderr
    assert any(
        ln.startswith("dicomsniffd: note: ") and "nosuchuser42" in ln and "as root" in ln
        for ln in result.stderr.splitlines()
    )
