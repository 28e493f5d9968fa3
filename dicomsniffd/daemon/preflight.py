"""Pre-flight: what `run` would refuse at start, checked without the live interface.

`check-config` runs these; `run` itself meets the same rules as it starts (the BPF filter
through the capture handle, the TLS files through the HTTP server, the run user through
the privilege drop). Kept apart from reload (which checks a filter on SIGHUP) and http
(which serves), so neither imports the other.
"""

from __future__ import annotations

import os

from dicomsniffd.capture import BpfError
from dicomsniffd.config import Config
from dicomsniffd.daemon.errors import EXIT_CONFIG, StartupError
from dicomsniffd.daemon.http import ListenError, tls_context
from dicomsniffd.daemon.privileges import PrivilegeError, _run_user
from dicomsniffd.daemon.reload import check_bpf

# The link types a capture handle may have: "any" gives Linux cooked SLL or SLL2 (the
# libpcap version decides), a named Linux interface on a mirror port Ethernet.
_LINK_NAMES = {1: "Ethernet", 113: "Linux cooked SLL", 276: "Linux cooked SLL2"}


def link_types_for(interface: str) -> tuple[int, ...]:
    return (113, 276) if interface == "any" else (1,)


def check_startable(config: Config) -> list[str]:
    """What `run` checks at start-up without the live interface; raises StartupError (exit
    2) on the first thing run would refuse, else returns one line per check made."""
    cap = config.capture
    links = link_types_for(cap.interface)
    for linktype in links:
        try:
            check_bpf(cap.bpf, linktype, cap.snaplen)
        except BpfError as exc:
            raise StartupError(
                f"capture.bpf: {exc} (for {_LINK_NAMES[linktype]}, the link type of "
                f"interface {cap.interface!r})",
                EXIT_CONFIG,
            ) from None
    names = " and ".join(_LINK_NAMES[lt] for lt in links)
    done = [f"capture.bpf compiles for {names}"]
    tls = config.metrics.tls
    if tls.cert_file:
        try:
            tls_context(tls.cert_file, tls.key_file, tls.client_ca_file)
        except ListenError as exc:
            hint = ""
            if "Permission denied" in str(exc) and os.geteuid() != 0:
                hint = " (run check-config as the user that starts the daemon: it reads them)"
            raise StartupError(f"metrics TLS setup failed: {exc}{hint}", EXIT_CONFIG) from None
        ca = ", key and client CA" if tls.client_ca_file else " and key"
        done.append(f"metrics.tls certificate{ca} load")
    directory = config.evidence.directory
    if directory:
        if os.path.lexists(directory) and not os.path.isdir(directory):
            raise StartupError(
                f"evidence.directory {directory} exists and is not a directory", EXIT_CONFIG
            )
        done.append(f"evidence.directory {directory} is a directory or can be created")
    return done


def run_user_note(config: Config) -> str:
    """When started as root, run switches to daemon.user and refuses a missing or root one;
    started as non-root (systemd DynamicUser=) it never looks the user up: only a note."""
    try:
        user = _run_user(config.daemon)
    except PrivilegeError as exc:
        return f"{exc}: started as root, run would refuse this (as non-root it is not used)"
    if user.pw_uid == 0:
        return "daemon.user is root: started as root, run would refuse this"
    return ""
