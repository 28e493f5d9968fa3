"""Build the fuzz seed corpus at run time (captures are never committed).

    python3 fuzz/make_corpus.py CORPUS_DIR [--real] [--scenarios a_store50 e_abort ...]

Always writes synthetic seeds (fuzz/dicomgen.py: stores, statuses, echo, reject, abort,
user identity) in all three input modes. With ``--real`` (root: network namespaces) it
also runs real-traffic scenarios from tests/scenarios/ (DCMTK / pynetdicom peers,
captured with tcpdump), and turns every DICOM TCP connection in each capture into a
TCP-mode seed (one record per captured segment, in capture order: retransmissions and
all) plus a FRAMES-mode seed of the first frames of the raw capture.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import dicomgen  # noqa: E402
import dpkt  # noqa: E402
import harness  # noqa: E402

MAX_SEED = 64 * 1024  # keep seeds small: the fuzzer mutates faster


def _write(outdir: str, data: bytes) -> str:
    name = hashlib.sha1(data).hexdigest()[:16]
    path = os.path.join(outdir, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def synthetic_streams() -> list[list[dicomgen.Pdu]]:
    return [
        dicomgen.store_association(2, size=3000),
        dicomgen.store_association(3, size=500, statuses=(0xA700, 0xB000, 0xC000)),
        dicomgen.store_association(1, size=100, echo=False, user=None),
        [dicomgen.associate_rq(user="u", passcode="p"), dicomgen.associate_rj()],
        [
            dicomgen.associate_rq(),
            dicomgen.associate_ac(),
            *dicomgen.c_echo(1),
            dicomgen.abort(1, 2, 6),
        ],
        [
            dicomgen.associate_rq(),
            dicomgen.associate_ac(),
            *dicomgen.c_store(7, bytes(300), cmd_fragments=3, fragment=64),
        ],
    ]


def synthetic_seeds() -> list[bytes]:
    seeds = []
    for pdus in synthetic_streams():
        recs = dicomgen.encode_stream(pdus)
        seeds.append(harness.encode_tcp_records(recs))
        seeds.append(harness.encode_conv_records(recs))
        script = harness.TcpScript()
        for d, raw in recs:
            script.send(d, raw)
        script.close()
        raw_seed = bytearray([harness.MODE_FRAMES])
        for fr in script.frames:
            raw_seed += len(fr).to_bytes(2, "big") + fr
        seeds.append(bytes(raw_seed))
    return seeds


def seeds_from_pcap(path: str, max_bytes: int = MAX_SEED) -> list[bytes]:
    """TCP-mode seeds (one per connection) and one FRAMES-mode seed from a capture."""
    flows: dict[tuple, list[tuple[int, bytes]]] = {}
    raw_seed = bytearray([harness.MODE_FRAMES])
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        linktype = reader.datalink()
        for _ts, buf in reader:
            if linktype == dpkt.pcap.DLT_EN10MB and len(raw_seed) + len(buf) < max_bytes:
                raw_seed += len(buf).to_bytes(2, "big") + buf
            try:
                eth = (
                    dpkt.ethernet.Ethernet(buf)
                    if linktype == dpkt.pcap.DLT_EN10MB
                    else dpkt.sll.SLL(buf)
                )
            except (dpkt.UnpackError, dpkt.NeedData):
                continue
            ip = eth.data
            tcp = getattr(ip, "data", None)
            if not isinstance(tcp, dpkt.tcp.TCP) or not tcp.data:
                continue
            a, b = (bytes(ip.src), tcp.sport), (bytes(ip.dst), tcp.dport)
            key = (a, b) if (a, b) in flows or (b, a) not in flows else (b, a)
            recs = flows.setdefault(key, [])
            recs.append((0 if key[0] == a else 1, bytes(tcp.data)))
    out = []
    for recs in flows.values():
        seed = harness.encode_tcp_records(recs)
        out.append(seed[:max_bytes])
    if len(raw_seed) > 1:
        out.append(bytes(raw_seed))
    return out


def real_seeds(names: list[str]) -> list[bytes]:
    import scenarios

    with tempfile.TemporaryDirectory(prefix="dsniff-corpus-") as wd:
        result = scenarios.generate_all(wd, only=names, parallel=2)
        seeds = []
        for sc in result.values():
            seeds += seeds_from_pcap(sc.pcap)
        return seeds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--real", action="store_true", help="also capture real traffic (root)")
    ap.add_argument(
        "--scenarios",
        nargs="*",
        default=[
            "a_store50",
            "b_echo3",
            "d_assoc_rejected",
            "e_abort",
            "f_statuses",
            "h_find20",
            "i_move5",
            "j_loss",
        ],
    )
    args = ap.parse_args(argv)
    os.makedirs(args.outdir, exist_ok=True)
    seeds = synthetic_seeds()
    if args.real:
        seeds += real_seeds(args.scenarios)
    for s in seeds:
        _write(args.outdir, s)
    print(f"{len(seeds)} seeds in {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
