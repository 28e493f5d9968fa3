"""The UID dictionary read without importing pydicom (dicomsniffd/dicom/uid_dictionary.py)
gives the answers pydicom's own ``UID`` gives: every entry, and UIDs it does not know."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
import warnings

import pytest
from pipeline_captures import REPO
from pydicom.uid import UID, UID_dictionary

from dicomsniffd import names
from dicomsniffd.dicom import uid_dictionary
from dicomsniffd.dicom.uids import uid_name

# UIDs the dictionary does not hold: a newer SOP class under the DICOM root, vendor
# roots, instance UIDs, syntactically broken ones, padding a peer might leave on.
UNKNOWN = [
    "1.2.840.10008.5.1.4.1.1.999999",
    "1.2.840.10008.",
    "1.2.276.0.7230010.3.0.3.6.7",
    "1.3.12.2.1107.5.1.4.12345.30000020010110000000000001",
    "2.25.329800735698586629295641978511506172918",
    "1." + "1" * 70,
    "1..2",
    "01.2.3",
    "CTImageStorage",
    "1.2.840.10008.1.2 ",
    "\t1.2.840.10008.1.2.1\n",
    " 1.2.3 ",
    "1.2.840.10008.1.2\x00",
    "\x00",
    "é.1",
    "",
    " ",
]


def _pydicom(uid: str) -> tuple[str, str, str]:
    with warnings.catch_warnings():  # pydicom warns about invalid UIDs; the value counts
        warnings.simplefilter("ignore")
        value = UID(uid)
        return value.keyword, value.name, value.type


def test_the_dictionary_is_pydicoms() -> None:
    """In a process of its own: importing pynetdicom (as some tests do) adds UIDs to
    pydicom's dictionary object; dicomsniffd never imports it."""
    check = (
        "from pydicom.uid import UID_dictionary as theirs\n"
        "from dicomsniffd.dicom.uid_dictionary import UID_DICTIONARY as ours\n"
        "assert ours == theirs and ours is not theirs and len(ours) > 400, len(ours)\n"
    )
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("uid", [*uid_dictionary.UID_DICTIONARY, *UNKNOWN])
def test_keyword_name_and_type_as_pydicom_uid(uid: str) -> None:
    assert names._uid_entry(uid) == _pydicom(uid)


@pytest.mark.parametrize("uid", [*uid_dictionary.UID_DICTIONARY, *UNKNOWN])
def test_display_name_as_pydicom_uid_name(uid: str) -> None:
    assert names.uid_display_name(uid) == (_pydicom(uid.strip(" \x00"))[1] if uid else "")


def test_label_rules_for_unknown_uids() -> None:
    assert uid_name("1.2.840.10008.5.1.4.1.1.2") == "CTImageStorage"
    assert uid_name("1.2.840.10008.5.1.4.1.1.999999") == "unknown"  # newer than pydicom
    assert uid_name("1.2.276.0.7230010.3.0.3.6.7") == "private"
    assert uid_name("1..2") == "unknown"
    assert names.transfer_syntax_keyword("1.2.840.10008.1.2.1") == "ExplicitVRLittleEndian"
    assert names.transfer_syntax_keyword("1.2.840.10008.5.1.4.1.1.2") == "unknown"  # SOP class


def test_pydicoms_module_is_not_replaced() -> None:
    """The data module is loaded under dicomsniffd's own name, not registered anywhere:
    pydicom's ``pydicom._uid_dict``, if imported, is pydicom's."""
    assert "dicomsniffd.dicom._pydicom_uid_dict" not in sys.modules
    module = sys.modules.get("pydicom._uid_dict")
    assert module is None or module.__name__ == "pydicom._uid_dict"


def test_fallback_to_the_public_import_when_the_data_module_is_missing(monkeypatch) -> None:
    """A pydicom without ``_uid_dict.py`` (a future layout): the public name is used."""
    real_isfile = uid_dictionary.os.path.isfile

    def no_data_module(path: str) -> bool:
        return False if path.endswith("_uid_dict.py") else real_isfile(path)

    monkeypatch.setattr(uid_dictionary.os.path, "isfile", no_data_module)
    assert uid_dictionary._from_data_module() is None
    assert uid_dictionary._load() is UID_dictionary


def test_fallback_when_pydicom_is_not_found_by_find_spec(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert uid_dictionary._from_data_module() is None


def test_fallback_when_the_data_module_has_another_shape(monkeypatch, tmp_path) -> None:
    """A ``_uid_dict.py`` whose entries are not pydicom 2/3's 5-tuples is not used."""
    (tmp_path / "_uid_dict.py").write_text("UID_dictionary = {'1.2': ('a', 'b')}\n")
    spec = importlib.machinery.ModuleSpec("pydicom", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    assert uid_dictionary._from_data_module() is None
    (tmp_path / "_uid_dict.py").write_text("raise RuntimeError('broken')\n")
    assert uid_dictionary._from_data_module() is None
