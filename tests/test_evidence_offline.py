"""analyze --evidence on hand-built captures: frames placed by sequence number (also out
of order, retransmitted, IPv6, past a 32-bit wrap), rewritten in place with valid checksums."""

from __future__ import annotations

import os

import dpkt
import pytest
from helpers_pcap import ACK, PSH, SYN, ethernet, ipv4, ipv6, tcp, write_pcap
from test_dicom_streams import associate_ac, associate_rq, dimse, release_rp, release_rq
from test_evidence_walker import CANARY, PATIENT_ID, _store

from dicomsniffd.evidence import folder
from dicomsniffd.evidence.folder import EvidenceError
from dicomsniffd.evidence.offline import write_evidence
from dicomsniffd.evidence.select import choose

CLIENT4, SERVER4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def _segments(stream: bytes, mss: int = 400) -> list[bytes]:
    return [stream[i : i + mss] for i in range(0, len(stream), mss)]


def connection(isn_c=1000, isn_s=50000, v6=False, reorder=False, sport=40000):
    """Frames of one association: handshake, RQ/AC, a C-STORE with the canary, its
    response, release. ``reorder``: two data segments swapped and one sent twice."""
    ip = (lambda l4, src, dst: ipv6(l4, src, dst)) if v6 else ipv4
    c, s = (bytes(15) + b"\x01", bytes(15) + b"\x02") if v6 else (CLIENT4, SERVER4)
    etype = 0x86DD if v6 else 0x0800
    up = associate_rq(identity=True) + b"".join(_store()) + release_rq()
    down_parts = [
        associate_ac(),
        b"".join(
            dimse("C_STORE_RSP", MessageIDBeingRespondedTo=1, AffectedSOPClassUID="1.2",
                  AffectedSOPInstanceUID="1.2.3.4", Status=0xA700)
        ),
        release_rp(),
    ]  # fmt: skip
    down = b"".join(down_parts)

    def frame(src_is_client: bool, seq: int, ack: int, flags: int, payload: bytes = b""):
        src, dst = (c, s) if src_is_client else (s, c)
        sp, dp = (sport, 104) if src_is_client else (104, sport)
        l4 = tcp(sp, dp, seq % 2**32, ack % 2**32, flags, payload=payload)
        return ethernet(ip(l4, src, dst), etype)

    frames = [frame(True, isn_c, 0, SYN), frame(False, isn_s, isn_c + 1, SYN | ACK)]
    ups = _segments(up)
    offsets = [sum(len(x) for x in ups[:i]) for i in range(len(ups))]
    order = list(range(len(ups)))
    if reorder:
        order[2], order[3] = order[3], order[2]
        order.insert(5, 4)  # segment 4 again: a retransmission
    frames.append(frame(True, isn_c + 1, isn_s + 1, ACK | PSH, ups[0]))
    frames.append(frame(False, isn_s + 1, isn_c + 1 + len(ups[0]), ACK | PSH, down_parts[0]))
    for i in order[1:]:
        frames.append(frame(True, isn_c + 1 + offsets[i], isn_s + 1, ACK | PSH, ups[i]))
    frames.append(
        frame(False, isn_s + 1 + len(down_parts[0]), isn_c + 1 + len(up), ACK | PSH,
              down[len(down_parts[0]) :])
    )  # fmt: skip
    return frames, up, down


def _assoc(flow_id=1, client="10.0.0.1:40000", server="10.0.0.2:104", start=None):
    return {"flow_id": flow_id, "client": client, "server": server, "start_ts": start,
            "calling_ae": "MODALITY1", "called_ae": "PACS"}  # fmt: skip


def _read(path):
    with open(path, "rb") as f:
        return [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]


def _tcp_of(frame: bytes):
    eth = dpkt.ethernet.Ethernet(frame)
    return eth.data, eth.data.data


def _dpkt_sums(frame: bytes) -> tuple[int, int | None]:
    """(TCP checksum, IPv4 header checksum) as dpkt computes them for this frame: dpkt
    fills in zero checksums when it packs (the independent second opinion)."""
    ip, seg = _tcp_of(frame)
    seg.sum = 0
    if isinstance(ip, dpkt.ip.IP):
        ip.sum = 0
    ip.data = seg
    again = type(ip)(bytes(ip))
    return again.data.sum, getattr(again, "sum", None)


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("reorder", [False, True])
def test_one_association_scrubbed_in_place(tmp_path, v6, reorder):
    frames, up, down = connection(v6=v6, reorder=reorder)
    capture = write_pcap(tmp_path / "in.pcap", frames)
    out_dir = folder.prepare(str(tmp_path / "ev"))
    client = "[::1]:40000" if v6 else "10.0.0.1:40000"
    server = "[::2]:104" if v6 else "10.0.0.2:104"
    written = write_evidence([str(capture)], [_assoc(client=client, server=server)], out_dir)
    assert [w.name for w in written] == ["assoc1-MODALITY1-to-PACS.pcap"]
    data = (tmp_path / "ev" / written[0].name).read_bytes()
    assert CANARY not in data and PATIENT_ID not in data
    assert b"radiology-user-7f3a" not in data and b"s3cr3t-Passc0de!" not in data
    original, scrubbed = _read(capture), _read(tmp_path / "ev" / written[0].name)
    assert len(original) == len(scrubbed)
    up_out, down_out = bytearray(len(up)), bytearray(len(down))
    for (ts0, f0), (ts1, f1) in zip(original, scrubbed, strict=True):
        assert ts0 == pytest.approx(ts1, abs=1e-6) and len(f0) == len(f1)
        (ip0, t0), (ip1, t1) = _tcp_of(f0), _tcp_of(f1)
        assert (t0.seq, t0.ack, t0.flags, t0.sport) == (t1.seq, t1.ack, t1.flags, t1.sport)
        assert ip0.src == ip1.src and ip0.dst == ip1.dst
        assert _dpkt_sums(f1) == (t1.sum, None if v6 else ip1.sum)
        if t1.data:
            base = 1001 if t1.sport == 40000 else 50001
            at = (t1.seq - base) % 2**32
            target = up_out if t1.sport == 40000 else down_out
            target[at : at + len(t1.data)] = t1.data
    # The rebuilt streams: headers, association PDUs and command sets as sent, data sets zero.
    assert bytes(down_out) == down
    assert up_out[: len(associate_rq(identity=True))] != up[: len(associate_rq(identity=True))]
    assert up_out.endswith(release_rq())
    store = _store()
    start = len(associate_rq(identity=True))
    assert up_out[start : start + len(store[0])] == store[0]
    readme = (tmp_path / "ev" / "README.txt").read_text()
    assert "assoc1-MODALITY1-to-PACS.pcap" in readme and "1 user identity values" in readme


def test_sequence_numbers_past_the_32_bit_wrap(tmp_path):
    frames, _up, _down = connection(isn_c=2**32 - 1500, isn_s=2**32 - 10)
    capture = write_pcap(tmp_path / "in.pcap", frames)
    written = write_evidence([str(capture)], [_assoc()], folder.prepare(str(tmp_path / "ev")))
    data = (tmp_path / "ev" / written[0].name).read_bytes()
    assert CANARY not in data
    assert b"PACS" in data and b"1.2.840.10008.5.1.4.1.1.2" in data  # RQ and command kept
    assert "lost its place at" not in (tmp_path / "ev" / "README.txt").read_text()


def test_without_the_syn_everything_is_scrubbed(tmp_path):
    frames, _up, _down = connection()
    capture = write_pcap(tmp_path / "in.pcap", frames[2:])  # capture began after the handshake
    written = write_evidence([str(capture)], [_assoc()], folder.prepare(str(tmp_path / "ev")))
    scrubbed = _read(tmp_path / "ev" / written[0].name)
    assert len(scrubbed) == len(frames) - 2
    for _ts, frame in scrubbed:
        assert set(_tcp_of(frame)[1].data) <= {0}
    assert "SYN not captured" in (tmp_path / "ev" / "README.txt").read_text()


def test_reused_port_two_connections_two_files(tmp_path):
    first, _, _ = connection(isn_c=1000)
    second, _, _ = connection(isn_c=900000, isn_s=7000)
    capture = write_pcap(tmp_path / "in.pcap", first + second, step=0.01)
    t0 = 1_700_000_000.0
    chosen = [_assoc(1, start=t0 + 0.02), _assoc(2, start=t0 + 0.01 * len(first) + 0.02)]
    written = write_evidence([str(capture)], chosen, folder.prepare(str(tmp_path / "ev")))
    assert [w.frames for w in written] == [len(first), len(second)]
    seqs = {_tcp_of(f)[1].seq for _ts, f in _read(tmp_path / "ev" / written[1].name)}
    assert 900000 in seqs and 1000 not in seqs


def test_choose_problems_all_and_numbers():
    ok = {"flow_id": 1, "outcome": "accepted", "dimse": {"C-STORE": {"0x0000": 3}}}
    bad = {"flow_id": 2, "outcome": "accepted", "dimse": {"C-STORE": {"0xA700": 1}}}
    errs = {"flow_id": 3, "outcome": "accepted", "dimse": {}}
    assocs = [ok, bad, errs]
    assert choose(assocs, {"3": 2}) == [bad, errs]
    assert choose(assocs, {}, every=True) == assocs
    assert choose(assocs, {}, numbers=[1]) == [ok]
    with pytest.raises(EvidenceError, match="--evidence-association 9: no association"):
        choose(assocs, {}, numbers=[9])


def test_directory_checks(tmp_path):
    plain = tmp_path / "file"
    plain.write_text("x")
    with pytest.raises(EvidenceError, match="exists and is not a directory"):
        folder.prepare(str(plain))
    target = tmp_path / "outside"
    target.write_text("keep me")
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "README.txt").symlink_to(target)
    with pytest.raises(EvidenceError, match="symbolic link: not written"):
        folder.write_text(str(ev), "README.txt", "new")
    assert target.read_text() == "keep me"


def test_full_directory_is_one_error_and_leaves_no_file(tmp_path):
    """A 4 KiB tmpfs (the tests run as root, as the netns tests need)."""
    import subprocess

    frames, _, _ = connection()
    capture = write_pcap(tmp_path / "in.pcap", frames * 3)
    ev = tmp_path / "tiny"
    ev.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(ev)], check=True)
    try:
        with pytest.raises(EvidenceError, match="No space left on device"):
            write_evidence([str(capture)], [_assoc()], folder.prepare(str(ev)))
        assert os.listdir(ev) == []
    finally:
        subprocess.run(["umount", str(ev)], check=True)


def _cli(argv, capsys):
    from dicomsniffd.cli import main

    code = main(["analyze", "--quiet", *argv])
    return code, capsys.readouterr()


def test_cli_evidence_into_a_file_is_one_line_exit_2(tmp_path, capsys):
    frames, _, _ = connection()
    capture = write_pcap(tmp_path / "in.pcap", frames)
    plain = tmp_path / "plain"
    plain.write_text("keep")
    code, out = _cli([str(capture), "--evidence", str(plain)], capsys)
    assert code == 2 and out.err.count("\n") == 1 and "is not a directory" in out.err
    assert plain.read_text() == "keep" and out.out == ""


def test_cli_evidence_options_need_the_directory(tmp_path, capsys):
    frames, _, _ = connection()
    capture = write_pcap(tmp_path / "in.pcap", frames)
    code, out = _cli([str(capture), "--evidence-all"], capsys)
    assert code == 2 and "need --evidence DIR" in out.err


def test_cli_unknown_association_number(tmp_path, capsys):
    frames, _, _ = connection()
    capture = write_pcap(tmp_path / "in.pcap", frames)
    argv = [str(capture), "--evidence", str(tmp_path / "ev"), "--evidence-association", "7"]
    code, out = _cli(argv, capsys)
    assert code == 2 and "--evidence-association 7: no association" in out.err
    assert out.err.count("\n") == 1


def test_cli_writes_the_failing_association(tmp_path, capsys):
    frames, _, _ = connection()  # the C-STORE is answered 0xA700
    capture = write_pcap(tmp_path / "in.pcap", frames)
    code, out = _cli([str(capture), "--evidence", str(tmp_path / "ev")], capsys)
    assert code == 0, out.err
    assert "1 scrubbed pcap(s) written" in out.err
    assert sorted(os.listdir(tmp_path / "ev")) == ["README.txt", "assoc1-MODALITY1-to-PACS.pcap"]


@pytest.mark.parametrize(
    ("options", "needle"),
    [("size=4k", "No space left on device"), ("ro", "is not writable")],
)
def test_cli_full_or_read_only_directory_is_one_line_exit_2(tmp_path, capsys, options, needle):
    import subprocess

    frames, _, _ = connection()
    capture = write_pcap(tmp_path / "in.pcap", frames * 3)
    ev = tmp_path / "mnt"
    ev.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(ev)], check=True)
    try:
        code, out = _cli([str(capture), "--evidence", str(ev)], capsys)
        assert code == 2 and needle in out.err and out.err.count("\n") == 1, out.err
        assert "Traceback" not in out.err and os.listdir(ev) == []
    finally:
        subprocess.run(["umount", str(ev)], check=True)


@pytest.mark.parametrize("link", ["sll2", "vlan"])
def test_linux_cooked_and_vlan_tagged_frames(tmp_path, link):
    from helpers_pcap import ethernet, sll2

    frames, _, _ = connection()
    if link == "sll2":
        wrapped, linktype = [sll2(f[14:]) for f in frames], 276
    else:
        wrapped, linktype = [ethernet(f[14:], vlans=[(0x8100, 7)]) for f in frames], 1
    capture = write_pcap(tmp_path / "in.pcap", wrapped, linktype=linktype)
    [w] = write_evidence([str(capture)], [_assoc()], folder.prepare(str(tmp_path / "ev")))
    data = (tmp_path / "ev" / w.name).read_bytes()
    assert w.frames == len(frames) and CANARY not in data and PATIENT_ID not in data
    assert b"1.2.840.10008.5.1.4.1.1.2" in data  # the command kept
    with open(tmp_path / "ev" / w.name, "rb") as f:
        assert dpkt.pcap.Reader(f).datalink() == linktype
