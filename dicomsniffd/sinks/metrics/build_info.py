"""The versions ``dicomsniffd_build_info`` reports: ours, pcapy-ng's, libpcap's, Python's."""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import logging
import platform
import re

from dicomsniffd import __version__

log = logging.getLogger(__name__)

UNKNOWN = "unknown"


# Looked up once per process: the versions cannot change while it runs, and the libpcap
# lookup imports pcapy and reads /proc/self/maps.
@functools.cache
def build_info() -> tuple[str, str, str, str]:
    """(version, pcapy_ng, libpcap, python): the label values of dicomsniffd_build_info."""
    return (
        __version__,
        package_version("pcapy-ng"),
        libpcap_version(),
        platform.python_version(),
    )


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


def libpcap_version() -> str:
    """Version of the libpcap pcapy-ng actually uses.

    pcapy-ng has no version call, and its wheels bundle their own libpcap (which is
    not the system one), so ask the library mapped into this process after importing
    pcapy: dlopen of an already loaded path returns that same library.
    """
    try:
        import pcapy  # noqa: F401  (loads the bundled libpcap into the process)

        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if "libpcap" in line and "/" in line}
        for path in sorted(paths):
            func = ctypes.CDLL(path).pcap_lib_version
            func.restype = ctypes.c_char_p
            match = re.search(rb"libpcap version ([0-9][\w.\-]*)", func() or b"")
            if match:
                return match.group(1).decode("ascii")
    except Exception:  # build info is cosmetic: never let it break a scrape
        log.debug("libpcap version not found", exc_info=True)
    return UNKNOWN
