"""DICOM protocol core: sans-IO framing, ACSE, DIMSE and conversation state."""
