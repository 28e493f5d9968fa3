"""Make a REAL C-STORE capture for the benchmarks (needs root, DCMTK, tcpdump, ethtool).

    python3 benchmarks/make_capture.py [-o benchmarks/out/cstore.pcap] [--associations 24]
        [--images 16] [--size 512] [--parallel 2]

Two network namespaces joined by a veth pair (MTU 1500, TSO/GSO/GRO/LRO off: real
Ethernet-sized frames, as a mirror port delivers them); DCMTK storescp in namespace "b",
DCMTK storescu in namespace "a" sending ``associations`` x ``images`` synthetic CT images
(pydicom-generated, ``size`` x ``size`` 16-bit, synthetic patient names, one series per
association); ``parallel`` storescu processes run at once so associations interleave as
on a busy PACS. tcpdump -s 0 on veth "a" writes the pcap. The namespace helper is
tests/netns.py (shared with the real-traffic tests).

Prints one JSON line: path, packets captured, kernel drops, images, associations, port.
Captures go to benchmarks/out/ (gitignored): never commit them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import netns  # noqa: E402  (tests/netns.py: the namespace helper)

PORT = 11112
OUT_DIR = os.path.join(HERE, "out")
_FIRST = ["ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT", "GOLF", "HOTEL"]
_LAST = ["SYNTHETIC", "PHANTOM", "TESTCASE", "BENCHMARK"]


def dcmtk(name: str) -> str:
    """The DCMTK binary (pynetdicom installs same-named Python scripts that may shadow it)."""
    for d in ["/usr/bin", "/usr/local/bin", *os.environ.get("PATH", "").split(os.pathsep)]:
        cand = os.path.join(d, name)
        if not os.access(cand, os.X_OK):
            continue
        out = subprocess.run([cand, "--version"], capture_output=True, text=True)
        if "dcmtk" in (out.stdout + out.stderr).lower():
            return cand
    raise SystemExit(f"DCMTK {name} not found: apt-get install dcmtk")


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=["dicomsniffd-bench", *map(str, parts)])


def write_series(outdir: str, series: int, count: int, size: int) -> list[str]:
    """``count`` synthetic CT images of one synthetic patient (deterministic)."""
    os.makedirs(outdir, exist_ok=True)
    name = f"{_LAST[series % len(_LAST)]}^{_FIRST[series % len(_FIRST)]}{series:03d}"
    yy, xx = np.mgrid[0:size, 0:size]
    paths = []
    for i in range(1, count + 1):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = _uid("instance", series, i)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = _uid("implementation")
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = _uid("study", series)
        ds.SeriesInstanceUID = _uid("series", series)
        ds.PatientName = name
        ds.PatientID = f"BENCH{series:04d}"
        ds.Modality = "CT"
        ds.SeriesNumber = series
        ds.InstanceNumber = i
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        pix = ((xx * 7 + yy * 3 + i * 101 + series * 17) & 0x0FFF).astype("<u2")
        ds.PixelData = pix.tobytes()
        path = os.path.join(outdir, f"s{series:03d}_{i:04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_capture(out: str, associations: int, images: int, size: int, parallel: int) -> dict:
    netns.require_tools("ip", "ethtool", "tcpdump")
    storescu, storescp = dcmtk("storescu"), dcmtk("storescp")
    work = tempfile.mkdtemp(prefix="dsniff-bench-")
    try:
        series = [
            write_series(os.path.join(work, f"s{s}"), s, images, size)
            for s in range(1, associations + 1)
        ]
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        if os.path.exists(out):
            os.unlink(out)
        with netns.VethPair(ipv6=False) as net:
            scp = net.popen("b", [storescp, "-aet", "STORESCP", "--ignore", "-ta", "30",
                                  str(PORT)])  # fmt: skip
            net.wait_listening("b", PORT, proc=scp)
            # A large kernel buffer: the capture must not drop (checked below).
            tcpdump = net.popen("a", ["tcpdump", "-i", net.iface("a"), "-w", out, "-s", "0",
                                      "-n", "-B", "262144", "-Z", "root", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
            cap = netns.Capture(tcpdump, out)
            cap.start()
            started = time.monotonic()

            def send(s: int) -> None:
                p = net.run("a", [storescu, "-aet", f"MODALITY{s % 4 + 1}", "-aec", "STORESCP",
                                  net.ip("b"), str(PORT), *series[s - 1]],
                            check=False, timeout=600)  # fmt: skip
                if p.returncode != 0:
                    raise RuntimeError(f"storescu failed ({p.returncode}): {p.stderr[-2000:]}")

            with ThreadPoolExecutor(parallel) as pool:
                for f in [pool.submit(send, s) for s in range(1, associations + 1)]:
                    f.result()
            seconds = time.monotonic() - started
            cap.stop(settle=0.5)
        if cap.dropped_by_kernel:
            raise SystemExit(f"tcpdump dropped {cap.dropped_by_kernel} packets: capture unusable")
        return {
            "path": out,
            "packets": cap.captured,
            "dropped_by_kernel": cap.dropped_by_kernel,
            "associations": associations,
            "images": associations * images,
            "size": size,
            "port": PORT,
            "bytes": os.path.getsize(out),
            "seconds": round(seconds, 2),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default=os.path.join(OUT_DIR, "cstore.pcap"))
    ap.add_argument("--associations", type=int, default=24)
    ap.add_argument("--images", type=int, default=16, help="images per association")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--parallel", type=int, default=2)
    a = ap.parse_args(argv)
    info = make_capture(a.out, a.associations, a.images, a.size, a.parallel)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
