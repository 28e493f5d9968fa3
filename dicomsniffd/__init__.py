"""dicomsniffd: a passive DICOM network monitor."""

__version__ = "0.1.0"
