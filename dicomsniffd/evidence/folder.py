"""The evidence directory: checked before anything is read, files created only inside it
(never through a symbolic link), and its README that says what was scrubbed."""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterable
from typing import BinaryIO

README = "README.txt"


class EvidenceError(Exception):
    """A user error about the evidence directory: one line, exit 2."""


def prepare(path: str) -> str:
    """Create ``path`` if missing (and its parents); refuse a path that is not a writable
    directory. Returns the path."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise EvidenceError(f"evidence directory {path} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise EvidenceError(f"cannot create evidence directory {path}: {_reason(exc)}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise EvidenceError(f"evidence directory {path} is not writable")
    return path


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def safe_name(*parts: str) -> str:
    """A file name from AE titles and numbers: letters, digits, ``-``, ``_``, ``.`` only."""
    name = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", p.strip()).strip("_.") or "x" for p in parts)
    return name[:120]


def create(directory: str, name: str) -> BinaryIO:
    """A new (or truncated) regular file ``name`` in ``directory``; a symbolic link or
    anything else that is not a regular file there is refused, so nothing outside the
    directory is ever written."""
    path = os.path.join(directory, name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o640)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise EvidenceError(f"{path} is a symbolic link: not written") from None
        raise EvidenceError(f"cannot write {path}: {_reason(exc)}") from None
    if not os.path.isfile(path):
        os.close(fd)
        raise EvidenceError(f"{path} is not a regular file: not written")
    return os.fdopen(fd, "wb")


def write_text(directory: str, name: str, text: str) -> None:
    with create(directory, name) as f:
        f.write(text.encode("utf-8"))


def remove_quietly(directory: str, name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(directory, name))


SCRUB_RULES = """\
What was scrubbed (overwritten in place with zero bytes, nothing removed or moved)
- every byte of every data set: the value of every P-DATA-TF PDV whose message control
  header says "data set" (bit 0 clear), whatever its presentation context. Each
  complete data set then begins with the 8- or 12-byte header of one Data Set Trailing
  Padding element (FFFC,FFFC) whose length covers the rest (zeros), so that Wireshark
  shows one element per data set and stays in step for the next command;
- the values of the user identity sub-items (0x58 in the A-ASSOCIATE-RQ, 0x59 in the
  A-ASSOCIATE-AC): user name, passcode, Kerberos/SAML/JWT tokens and the server response;
  their lengths are kept;
- every byte of a stream after the walk lost its place (bytes missing from the capture
  across a PDU or PDV header, or something that is not a PDU where one must start), and
  every segment that could not be placed in its stream (its connection's SYN was not
  captured): these are scrubbed whole;
- link-layer padding after the IP packet.
What was kept, byte for byte
- link, IP and TCP headers (addresses, ports, sequence and acknowledgement numbers,
  flags, windows, options) and every packet's timestamp and length;
- every PDU header, every PDV header, every command set (group 0000: the command, its
  message IDs, SOP class and instance UIDs, status, error comment, and the Move
  Originator / destination AE titles), and the association PDUs (A-ASSOCIATE-RQ/AC/RJ,
  A-RELEASE, A-ABORT): AE titles, presentation contexts, syntaxes, maximum PDU length,
  implementation class UID and version name, role and extended negotiation.
Checksums: IP and TCP checksums are recomputed for every rewritten frame whose IP packet
was captured whole; frames cut by the capture's snap length keep their original
checksum (listed below as "checksums not recomputed"; Wireshark flags them only when
checksum validation is switched on).
Wireshark decodes the files with Decode As… TCP port <server port> → DICOM, or:
  tshark -r FILE.pcap -d tcp.port==PORT,dicom
"""


def readme(header: str, lines: Iterable[str]) -> str:
    return "\n".join([header, "", SCRUB_RULES, *lines, ""])
