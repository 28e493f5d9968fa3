"""Privilege drop: after the capture handles are open, keep no root and no capability."""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import pkgutil
import pwd
import sys

import dicomsniffd
from dicomsniffd.config import DaemonConfig
from dicomsniffd.daemon.errors import EXIT_CONFIG, StartupError

log = logging.getLogger("dicomsniffd.daemon")

DEFAULT_USERS = ("dicomsniffd", "nobody")  # daemon.user empty: the first that exists


class PrivilegeError(StartupError):
    pass


def _preload_modules() -> None:
    """Import everything the daemon may import lazily later.

    After the drop the new user may not be able to read the Python installation (e.g. a
    pyenv under /root): a late import would then fail in the middle of the capture.
    """
    for info in pkgutil.walk_packages(dicomsniffd.__path__, "dicomsniffd."):
        if info.name not in sys.modules and not info.name.endswith("__main__"):
            try:
                importlib.import_module(info.name)
            except Exception as exc:  # an optional module must not stop the daemon
                log.debug("preload of %s failed: %s", info.name, exc)
    for name in ("encodings.idna", "encodings.ascii", "encodings.latin_1", "pickle", "ssl"):
        importlib.import_module(name)


def _run_user(daemon: DaemonConfig) -> pwd.struct_passwd:
    names = (daemon.user,) if daemon.user else DEFAULT_USERS
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PrivilegeError(
        f"cannot drop privileges: user {' or '.join(names)} does not exist", EXIT_CONFIG
    )


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _drop_capabilities() -> None:
    """Clear every capability (effective, permitted, inheritable, ambient)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    libc = _libc()
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"cannot drop capabilities: {os.strerror(err)}")


def _no_new_privs() -> None:
    _libc().prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: no setuid binary can give them back


def drop_privileges(daemon: DaemonConfig) -> str:
    """Become the run user (when root) and keep no capability; returns what was done.

    Started as non-root (systemd's User=/DynamicUser= with AmbientCapabilities, or a
    setcap'd interpreter) there is no user to switch: only the capabilities go.
    """
    _preload_modules()
    if os.getuid() != 0 and os.geteuid() != 0:
        _drop_capabilities()
        _no_new_privs()
        return f"running as uid {os.getuid()}, capabilities dropped"
    user = _run_user(daemon)
    if user.pw_uid == 0:
        raise PrivilegeError(
            "refusing to run the capture as root: set a non-root user", EXIT_CONFIG
        )
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    _no_new_privs()
    if os.getuid() == 0 or os.geteuid() == 0:
        raise PrivilegeError("privilege drop failed: still root")
    try:
        os.setuid(0)
    except PermissionError:
        return f"running as {user.pw_name} (uid {user.pw_uid})"
    raise PrivilegeError("privilege drop failed: root could be regained")
