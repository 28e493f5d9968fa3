"""Which software sent an A-ASSOCIATE-RQ/AC: the product behind an Implementation Class UID.

PS3.7 D.3.3.2 gives every implementation a UID under its maker's root; the well-known
roots below name the toolkit. A UID under no known root is shown as it is (the version
name usually says more than a guess would). Each entry was checked against the software
itself where it is installable here (tests/test_implementations_real.py runs it and reads
what it sends); the others cite where the UID is set in the product's own source.

A root matches the UID itself or any UID below it (``root + "."``), the longest root
first, so a more specific entry can sit under a broader one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .events import UserInformation


@dataclass(frozen=True, slots=True)
class Product:
    root: str
    name: str
    note: str = ""  # shown after the name: what else is known to send this UID


PRODUCTS: tuple[Product, ...] = (
    # OFFIS' root. Checked: DCMTK 3.6.7 echoscu/storescu/storescp send
    # 1.2.276.0.7230010.3.0.3.6.7 "OFFIS_DCMTK_367"; Orthanc 1.10.1 sends the very same
    # as SCU and as SCP (it is built on DCMTK's network stack), so the name says so.
    Product("1.2.276.0.7230010.3", "DCMTK", "or a product built on it, e.g. Orthanc"),
    # Checked: pynetdicom 3.0.4 sends 1.2.826.0.1.3680043.9.3811.3.0.4 "PYNETDICOM_304".
    Product("1.2.826.0.1.3680043.9.3811", "pynetdicom"),
    # pydicom's own root (pydicom.uid.PYDICOM_ROOT_UID, PYDICOM_IMPLEMENTATION_UID
    # 1.2.826.0.1.3680043.8.498.1): peers built on pydicom without pynetdicom's UL.
    Product("1.2.826.0.1.3680043.8.498", "pydicom"),
    # Checked: gdcmscu 3.0.21 sends 1.2.826.0.1.3680043.2.1143.107.104.103.115.3.0.21
    # "GDCM 3.0.21" (the root is GDCM's; 107.104.103.115 spells "gdcm").
    Product("1.2.826.0.1.3680043.2.1143", "GDCM"),
    # Not installable here. dcm4che 3/5: IMPL_CLASS_UID = "1.2.40.0.13.1.3", version
    # "dcm4che-<version>" (github.com/dcm4che/dcm4che,
    # dcm4che-core/src/main/java/org/dcm4che3/data/Implementation.java); dcm4che 2:
    # "1.2.40.0.13.1.1" (org.dcm4che.data.Implementation). dcm4chee archives send these.
    Product("1.2.40.0.13.1.3", "dcm4che 3/5"),
    Product("1.2.40.0.13.1.1", "dcm4che 2"),
    Product("1.2.40.0.13.1", "dcm4che"),
    # Not installable here. fo-dicom: ClassUID "1.3.6.1.4.1.30071.8", version
    # "fo-dicom <major>.<minor>.<build>" (github.com/fo-dicom/fo-dicom,
    # FO-DICOM.Core/DicomImplementation.cs).
    Product("1.3.6.1.4.1.30071.8", "fo-dicom"),
)

# Longest root first: the first match is the most specific one.
_BY_LENGTH = tuple(sorted(PRODUCTS, key=lambda p: -len(p.root)))


@lru_cache(maxsize=1024)  # a network has few distinct implementations: lookups repeat
def product_of(class_uid: str) -> Product | None:
    """The product whose root the Implementation Class UID is under, or None."""
    if not class_uid:
        return None
    for product in _BY_LENGTH:
        root = product.root
        if class_uid == root or class_uid.startswith(root + "."):
            return product
    return None


def product_name(class_uid: str) -> str:
    """The product's name, "" when the UID's root is not a known one."""
    product = product_of(class_uid)
    return product.name if product is not None else ""


def describe(class_uid: str, version_name: str = "") -> str:
    """One phrase for a person: "DCMTK (OFFIS_DCMTK_367)", or the UID when the product
    is not known ("1.2.3.4 (MOD_1)"), or "not sent" when neither is there."""
    product = product_of(class_uid)
    if product is not None:
        what = product.name
        if product.note:
            what += f" ({product.note})"
    else:
        what = class_uid or "no Implementation Class UID"
    if version_name:
        return f"{what}, version name {version_name}"
    return what if class_uid or version_name else "not sent"


def implementation_dict(info: UserInformation | None) -> dict[str, Any] | None:
    """Which software sent an RQ/AC: its user information's identification, and the
    product when the Implementation Class UID's root is a known one ("" otherwise)."""
    if info is None:
        return None
    return {
        "class_uid": info.implementation_class_uid,
        "version_name": info.implementation_version_name,
        "max_pdu_length": info.max_pdu_length,
        "product": product_name(info.implementation_class_uid),
    }
