"""UID -> keyword names for metric labels (SOP classes, transfer syntaxes).

Label cardinality must stay bounded: a UID pydicom's dictionary (uid_dictionary.py) knows
maps to its keyword, an unknown UID under a non-DICOM root (vendor/private SOP classes,
per-site instance roots) maps to ``"private"``, and anything that is not even a
syntactically valid UID maps to ``"unknown"``, as does a valid UID under the DICOM root that
the installed pydicom does not know (a SOP class newer than its dictionary): UIDs are never label values (DESIGN §4).
The event log and the report carry the UID itself next to the name.
"""

from __future__ import annotations

import re
from functools import lru_cache

from dicomsniffd.dicom.uid_dictionary import UID_DICTIONARY

DICOM_ROOT = "1.2.840.10008."
_VALID_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


@lru_cache(maxsize=4096)
def uid_name(uid: str) -> str:
    """Keyword for ``uid`` ("CTImageStorage"), or "private" / "unknown" (see module doc)."""
    uid = uid.strip(" \x00")
    if not uid:
        return "unknown"
    entry = UID_DICTIONARY.get(uid)
    if entry is not None:
        keyword = entry[4]
        # A few dictionary entries (mostly retired or well-known frames) have no keyword.
        return keyword or "unknown"
    if len(uid) > 64 or not _VALID_UID.fullmatch(uid):
        return "unknown"
    if uid.startswith(DICOM_ROOT):
        return "unknown"
    return "private"
