"""The flight recorder's directory: at most ``max_files`` evidence files and
``max_bytes`` in all, the oldest removed first to make room for a new one.

An evidence file is a ``.pcap`` and its ``.txt`` (what was scrubbed in it); both count,
and both go together. Only files this recorder's naming scheme could have made are ever
counted or removed: nothing else in the directory is touched.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_OURS = re.compile(r"\d{8}T\d{6}(\.\d+)?Z-assoc\d+-.*\.(pcap|txt)")


@dataclass(slots=True)
class DirectoryBudget:
    directory: str
    max_files: int
    max_bytes: int
    removed: int = 0  # evidence files removed to make room

    def _entries(self) -> dict[str, list[tuple[str, int, float]]]:
        """{stem: [(name, size, mtime)]} of this recorder's files."""
        groups: dict[str, list[tuple[str, int, float]]] = {}
        try:
            names = os.listdir(self.directory)
        except OSError:
            return groups
        for name in names:
            if not _OURS.fullmatch(name):
                continue
            try:
                st = os.lstat(os.path.join(self.directory, name))
            except OSError:
                continue
            stem = name.rsplit(".", 1)[0]
            groups.setdefault(stem, []).append((name, st.st_size, st.st_mtime))
        return groups

    def usage(self) -> tuple[int, int]:
        """(evidence files, bytes) in the directory now."""
        groups = self._entries()
        return len(groups), sum(size for files in groups.values() for _n, size, _m in files)

    def make_room(self, incoming: int) -> bool:
        """Remove the oldest files until one more of ``incoming`` bytes fits; False when
        it cannot fit even in an empty directory."""
        if incoming > self.max_bytes:
            return False
        groups = self._entries()
        # Names start with the UTC time: their order is the age order, mtime breaks ties.
        order = sorted(groups, key=lambda stem: (stem, max(m for _n, _s, m in groups[stem])))
        total = sum(size for files in groups.values() for _n, size, _m in files)
        count = len(groups)
        while order and (count + 1 > self.max_files or total + incoming > self.max_bytes):
            stem = order.pop(0)
            for name, size, _mtime in groups[stem]:
                try:
                    os.unlink(os.path.join(self.directory, name))
                except FileNotFoundError:
                    pass
                except OSError:
                    return False
                total -= size
            count -= 1
            self.removed += 1
        return count + 1 <= self.max_files and total + incoming <= self.max_bytes
