"""Capture layer (DESIGN.md §1): frames in batches from a file or a live interface.

    files    FileSource (pcap/pcapng through pcapy-ng), raw_read_loop (the benchmark floor)
    pcapfile classic pcap read in chunks, records framed in C (FileSource, when compiled)
    pcapng   PcapngWalker: pcapng block walker for files that mix link types (libpcap refuses)
    live     LiveSource (BPF, snaplen, kernel buffer, PACKET_FANOUT), its error wording
    records  BatchRecords: one batch's (sec, usec, offset, caplen) records, both sources
    errors   CaptureError and its live subclasses

Knows nothing of TCP or DICOM. The names below are the layer's public surface for files;
the live capture is imported as ``dicomsniffd.capture.live`` by the daemon only, so that
``analyze`` does not load it.
"""

from dicomsniffd.capture.errors import BpfError, CaptureError, LiveCaptureError
from dicomsniffd.capture.files import FileSource, raw_read_loop
from dicomsniffd.capture.records import BatchRecords, Record

__all__ = [
    "BatchRecords",
    "BpfError",
    "CaptureError",
    "FileSource",
    "LiveCaptureError",
    "Record",
    "raw_read_loop",
]
