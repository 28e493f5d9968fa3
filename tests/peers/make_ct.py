"""Synthetic CT images for the real-traffic tests (never real patient data).

    python3 tests/peers/make_ct.py OUTDIR --count 50 --size 64 [--series 1]

Everything is deterministic: UIDs are derived from (series, index) and the pixel data is
a fixed pattern, so two runs write byte-identical files. Patient name "TEST^PATIENT".
Files are Explicit VR Little Endian, 16-bit MONOCHROME2, SOP class CT Image Storage.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

IMPLEMENTATION_UID = generate_uid(entropy_srcs=["dicomsniffd-tests", "implementation"])


def uid(*parts: object) -> str:
    """A deterministic UID (pydicom's root + hash of the parts)."""
    return generate_uid(entropy_srcs=["dicomsniffd-tests", *map(str, parts)])


def study_uid(series: int = 1) -> str:
    return uid("study", series)


def instance_uid(series: int, index: int) -> str:
    return uid("instance", series, index)


def _pixels(size: int, index: int) -> bytes:
    # A cheap deterministic gradient (no numpy): row-major 16-bit little endian.
    row = [(x * 37 + index * 101) & 0x0FFF for x in range(size)]
    out = bytearray()
    for y in range(size):
        off = (y * 13) & 0x0FFF
        out += struct.pack(f"<{size}H", *[(v + off) & 0x0FFF for v in row])
    return bytes(out)


def make_dataset(series: int, index: int, size: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = instance_uid(series, index)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "DSNIFF_TEST"

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid(series)
    ds.SeriesInstanceUID = uid("series", series)
    ds.FrameOfReferenceUID = uid("for", series)
    ds.PatientName = "TEST^PATIENT"
    ds.PatientID = "TEST0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = f"ACC{series:04d}"
    ds.StudyID = str(series)
    ds.SeriesNumber = series
    ds.InstanceNumber = index
    ds.Modality = "CT"
    ds.Manufacturer = "dicomsniffd synthetic"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [0.0, 0.0, float(index)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1.0
    ds.KVP = 120
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = _pixels(size, index)
    return ds


def make_series(outdir: str, count: int, size: int = 64, series: int = 1) -> list[tuple[str, str]]:
    """Write ``count`` files; returns [(path, SOPInstanceUID)] in InstanceNumber order."""
    os.makedirs(outdir, exist_ok=True)
    out = []
    for i in range(1, count + 1):
        ds = make_dataset(series, i, size)
        path = os.path.join(outdir, f"ct{series:02d}_{i:04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        out.append((path, str(ds.SOPInstanceUID)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--series", type=int, default=1)
    a = ap.parse_args(argv)
    for path, sop in make_series(a.outdir, a.count, a.size, a.series):
        print(path, sop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
