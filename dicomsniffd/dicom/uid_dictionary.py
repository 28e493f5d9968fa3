"""pydicom's UID dictionary, without importing pydicom.

Why not ``from pydicom.uid import UID_dictionary``: any ``pydicom.*`` import runs pydicom's
package ``__init__`` (its config, the pixel data handlers, numpy), about 270 ms before
the first packet of ``dicomsniffd analyze``, more than a whole read loop of many captures.
All we need is the dictionary, and pydicom keeps it in a plain data module,
``pydicom/_uid_dict.py`` (one dict literal, no imports). That file is loaded by itself here,
from the package's location (``find_spec`` finds it without importing the package), and
not registered in ``sys.modules``. ``_uid_dict`` is private to pydicom: if a future layout
moves it or changes its shape, the public import is the fallback (slower start, same data).
"""

from __future__ import annotations

import importlib.util
import os

# UID -> (name, type, info, retired, keyword), pydicom's layout of each entry.
UidEntry = tuple[str, str, str, str, str]


def _from_data_module() -> dict[str, UidEntry] | None:
    """The dictionary read from ``pydicom/_uid_dict.py``; None if that is not possible."""
    package = importlib.util.find_spec("pydicom")
    if package is None or not package.submodule_search_locations:
        return None
    for folder in package.submodule_search_locations:
        path = os.path.join(folder, "_uid_dict.py")
        if not os.path.isfile(path):
            continue
        # Its own name, so that it never stands in for pydicom's module if pydicom is
        # imported later; the loader still uses pydicom's __pycache__ for the bytecode.
        spec = importlib.util.spec_from_file_location("dicomsniffd.dicom._pydicom_uid_dict", path)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception:  # a broken or changed file: the public import decides
            return None
        table = getattr(module, "UID_dictionary", None)
        return table if _looks_right(table) else None
    return None


def _looks_right(table: object) -> bool:
    """A non-empty str -> 5-tuple mapping, as the lookups in uids.py and names.py expect."""
    if not isinstance(table, dict) or not table:
        return False
    uid, entry = next(iter(table.items()))
    return isinstance(uid, str) and isinstance(entry, tuple) and len(entry) == 5


def _load() -> dict[str, UidEntry]:
    table = _from_data_module()
    if table is None:
        from pydicom.uid import UID_dictionary  # the public name; imports all of pydicom

        table = UID_dictionary
    return table


UID_DICTIONARY: dict[str, UidEntry] = _load()
