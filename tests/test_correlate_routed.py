"""correlate on real traffic through a real router: NAT, MSS clamping, loss, an injected reset.

Three namespaces, modality a -- router r -- PACS b (tests/routed.py). DCMTK storescu sends
two associations of synthetic CT images to DCMTK storescp through the router, which in
turn masquerades (NAT: b sees the router's address), clamps the MSS of every SYN and
SYN-ACK to 1200, strips window scaling and SACK-permitted from the SYNs, drops every 30th
data segment from a and every 4th from b, and refuses the segments of the second
association that carry a marker string, answering each with a TCP reset to the sender
(REJECT --reject-with tcp-reset). tcpdump captures both router interfaces: NEAR on
the modality's link, FAR on the PACS's.

Every expectation comes from the router's own iptables counters and from how the peers
were driven, never from the analyser: the segments correlate calls lost are exactly the
packets the DROP and REJECT rules matched; the resets it calls injected, those REJECT sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import scenarios
from peers import make_ct
from pydicom import dcmread
from routed import RoutedNet

pytestmark = pytest.mark.netns

MARKER = "DSNIFF-RST-MARK-Q7"  # in the second data set of the second association only
CLAMP = 1200
# Every n-th data segment from a (the modality) and from b (the PACS) is dropped.
DROP_EVERY = {"a": 30, "b": 4}


def _images(wd: Path) -> tuple[list[str], list[str]]:
    first = [p for p, _ in make_ct.make_series(str(wd / "s1"), 6, 128, series=41)]
    # Other sizes than the first: make_ct's pixel data depend only on the index and size.
    second = [p for p, _ in make_ct.make_series(str(wd / "s2"), 3, 96, series=42)]
    ds = dcmread(second[1])
    # Longer than a segment: some segment holds the whole marker, wherever TCP cuts.
    ds.ImageComments = f"{MARKER} " * 80
    ds.save_as(second[1])
    return first, second


def capture_routed(wd: Path) -> dict:
    """Run the traffic; return the two pcaps and the router's counters."""
    first, second = _images(wd)
    near, far = str(wd / "near.pcap"), str(wd / "far.pcap")
    with RoutedNet() as net:
        net.add_masquerade("b")
        net.add_mss_clamp(CLAMP)
        net.add_option_strip("wscale,sack-permitted")
        net.add_forward_drop_every(DROP_EVERY["a"], min_length=100, source="a")
        net.add_forward_drop_every(DROP_EVERY["b"], min_length=100, source="b")
        net.add_reset_injection(MARKER, source="a")
        # -dhl: no reverse lookup of the peer (it would wait for a DNS timeout).
        storescp = [scenarios.dcmtk("storescp"), "-aet", "PACS", "--ignore", "-dhl"]
        scp = net.popen("b", [*storescp, "-ta", "30", str(scenarios.SCP_PORT)])
        net.wait_listening("b", scenarios.SCP_PORT, proc=scp)
        storescu = scenarios.dcmtk("storescu")
        with (
            net.capture("r", near, iface=net.router_iface("a"), bpf="tcp"),
            net.capture("r", far, iface=net.router_iface("b"), bpf="tcp"),
        ):
            base = [storescu, "-aet", "MODALITY", "-aec", "PACS", net.ip("b")]
            ok = net.run("a", [*base, str(scenarios.SCP_PORT), *first], check=False)
            cut = net.run("a", [*base, str(scenarios.SCP_PORT), *second], check=False)
        counters = {
            "dropped": net.forward_dropped(),
            "dropped_a": net.forward_dropped_from("a"),
            "dropped_b": net.forward_dropped_from("b"),
            "rejected": net.resets_injected(),
            "clamped": net.mss_clamped(),
            "stripped": net.options_stripped(),
            "masqueraded": net.masqueraded(),
            "router_a": net.router_ip("a"),
            "router_b": net.router_ip("b"),
            "a": net.ip("a"),
            "b": net.ip("b"),
        }
        scenarios.stop(scp)
    return {"near": near, "far": far, "ok": ok, "cut": cut, **counters}


def correlate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dicomsniffd", "correlate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        timeout=300,
    )


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    wd = tmp_path_factory.mktemp("correlate")
    run = capture_routed(wd)
    assert run["ok"].returncode == 0, run["ok"].stdout + run["ok"].stderr
    assert run["cut"].returncode != 0  # the reset really cut the second association
    assert "reset by peer" in run["cut"].stdout + run["cut"].stderr
    # Each segment holding the marker that was in flight before the reset reached the
    # modality is refused (one or two, by how TCP cut the data); 2 SYNs + 2 SYN-ACKs clamped.
    assert run["rejected"] >= 1 and run["clamped"] == 4 and run["stripped"] == 2
    assert run["dropped_a"] > 0 and run["dropped_b"] > 0
    proc = correlate(run["near"], run["far"], "--json")
    assert proc.returncode == 0, proc.stderr
    return wd, run, json.loads(proc.stdout)


def test_segments_lost_between_the_points_are_the_routers_drops_per_direction(routed):
    _wd, run, result = routed
    conns = result["connections"]
    assert len(conns) == 2 and not result["unmatched"]["near"] and not result["unmatched"]["far"]
    c2s = sum(c["directions"]["c2s"]["lost"] for c in conns)
    s2c = sum(c["directions"]["s2c"]["lost"] for c in conns)
    # The refused segment is lost too: REJECT drops it and answers with a reset instead.
    assert c2s == run["dropped_a"] + run["rejected"]
    assert s2c == run["dropped_b"]
    assert result["totals"]["lost"] == run["dropped"] + run["rejected"]
    for c in conns:  # the modality is on the NEAR side: its data reaches NEAR first
        assert c["client_side"] == "near"
        assert c["directions"]["c2s"]["upstream"] == "near"
        assert c["directions"]["s2c"]["upstream"] == "far"
        for d in c["directions"].values():
            for item in d["lost_segments"]:
                assert item["seen_at"] == d["upstream"] and item["dicom"], item


def test_nat_is_seen_through_and_reported(routed):
    _wd, run, result = routed
    assert run["masqueraded"] == 2
    for c in result["connections"]:
        assert c["matched_by"][0] == "ISN"
        assert c["near"]["client"].startswith(run["a"] + ":")
        assert c["far"]["client"].startswith(run["router_b"] + ":")
        assert c["near"]["server"] == c["far"]["server"] == f"{run['b']}:{scenarios.SCP_PORT}"
        assert [t["endpoint"] for t in c["translated"]] == ["client"]
    assert result["totals"]["translated"] == 2


def test_mss_clamping_and_stripped_options_are_reported_on_every_syn(routed):
    _wd, run, result = routed
    # The veth MTU is 1500, so both ends announce 1460; the router rewrites it to CLAMP, and
    # strips window scaling and SACK-permitted from the SYNs (Linux offers both), so the
    # server does not offer them in its SYN-ACK: there only the MSS changes.
    assert result["totals"]["option_changes"] == {
        f"MSS 1460 -> {CLAMP}": run["clamped"],
        "window-scale removed": run["stripped"],
        "SACK-permitted removed": run["stripped"],
    }
    for c in result["connections"]:
        for name, flags in (("c2s", "SYN"), ("s2c", "SYN,ACK")):
            changes = c["directions"][name]["option_changes"]
            assert len(changes) == (3 if flags == "SYN" else 1)
            for change in changes:
                assert change["first"]["flags"] == flags and change["first"]["rel_seq"] == 0


def test_the_injected_reset_is_found_with_the_message_it_killed(routed):
    _wd, run, result = routed
    first, second = result["connections"]
    assert all(not d["resets"] for d in first["directions"].values())
    assert first["association"]["end"] == "released"
    assert second["association"] == {
        "calling_ae": "MODALITY",
        "called_ae": "PACS",
        "result": "accepted",
        "end": "reset",
        "messages": second["association"]["messages"],
        "seen_at": "near",
    }
    # The modality answers what still arrives for its closed socket with resets of its own:
    # sent by the endpoint, seen at both points.
    for reset in second["directions"]["c2s"]["resets"]:
        assert reset["verdict"] == "sent by the endpoint", reset
    resets = second["directions"]["s2c"]["resets"]
    assert sum(r["copies"] for r in resets) == run["rejected"]
    for reset in resets:
        assert reset["seen_at"] == "near" and "RST" in reset["flags"]
        assert reset["verdict"].startswith("injected between the points")
        # The marker is in the second file: message 2's C-STORE was cut, never answered.
        assert reset["dicom"] == "during C-STORE-RQ message 2 (context 41), unanswered ended"
    assert result["totals"]["injected_resets"] == run["rejected"]
    # tshark as second opinion: NEAR has one reset more than FAR per refused segment.
    counts = [_tshark_count(run[p], "tcp.flags.reset==1") for p in ("near", "far")]
    assert counts[0] - counts[1] == run["rejected"], counts


def _tshark_count(path: str, display_filter: str) -> int:
    out = subprocess.run(
        ["tshark", "-r", path, "-Y", display_filter, "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len(out.split())


def test_clock_offset_between_the_captures_is_estimated(routed):
    wd, run, result = routed
    shifted = str(wd / "far-shifted.pcap")
    subprocess.run(["editcap", "-t", "2.5", run["far"], shifted], check=True)
    proc = correlate(run["near"], shifted, "--json")
    assert proc.returncode == 0, proc.stderr
    moved = json.loads(proc.stdout)
    # Both interfaces were captured on one host (one clock), then FAR moved 2.5 s later:
    # the estimate is off by half the difference of the fastest trips each way (µs).
    assert abs(moved["clock"]["offset_ms"] - 2500.0) < 1.0, moved["clock"]
    assert abs(result["clock"]["offset_ms"]) < 1.0, result["clock"]
    assert moved["totals"] == result["totals"]


def test_swapped_captures_are_noticed_and_give_the_same_answer(routed):
    _wd, run, result = routed
    proc = correlate(run["far"], run["near"], "--json")
    assert proc.returncode == 0, proc.stderr
    swapped = json.loads(proc.stdout)
    assert swapped["totals"] == result["totals"]
    for c in swapped["connections"]:
        assert c["client_side"] == "far"
        assert c["directions"]["c2s"]["upstream"] == "far"
    assert "client on the FAR side" in correlate(run["far"], run["near"]).stdout


def test_text_and_html_outputs_say_it_in_words(routed):
    wd, run, _result = routed
    report = wd / "between.html"
    proc = correlate(run["near"], run["far"], "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "2 connections seen at both points" in text
    assert f"MSS 1460 -> {CLAMP}" in text
    assert "injected between the points" in text
    assert "MODALITY -> PACS (accepted, reset" in text
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and "injected between the points" in page
    assert "MODALITY" in page and "<script" not in page


def test_mismatched_and_empty_pairs_are_one_line_errors(routed):
    wd, run, _result = routed
    first, second, empty = (str(wd / n) for n in ("first.pcap", "second.pcap", "empty.pcap"))
    subprocess.run(["tshark", "-r", run["near"], "-Y", "tcp.stream==0", "-w", first], check=True)
    subprocess.run(["tshark", "-r", run["far"], "-Y", "tcp.stream==1", "-w", second], check=True)
    subprocess.run(["tshark", "-r", run["far"], "-Y", "frame.number==0", "-w", empty], check=True)
    garbage = wd / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture file at all\n" * 10)
    cases = {
        (first, second): "no TCP connection in common",
        (run["near"], empty): "has no TCP segment",
        (str(garbage), run["far"]): "not a pcap or pcapng file",
        (run["near"], str(wd / "missing.pcap")): "capture file not found",
    }
    for (near, far), message in cases.items():
        proc = correlate(near, far)
        assert proc.returncode == 2, (near, far, proc.stderr)
        assert proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    proc = correlate(run["near"], run["far"], "--report", run["far"])
    assert proc.returncode == 2 and "refusing to write the report over" in proc.stderr


def test_a_truncated_capture_is_compared_up_to_the_cut_then_exit_2(routed):
    wd, run, _result = routed
    cut = wd / "near-cut.pcap"
    raw = Path(run["near"]).read_bytes()
    cut.write_bytes(raw[: len(raw) - 700])  # a copy interrupted in the last packet
    proc = correlate(str(cut), run["far"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "cut short in the middle of packet" in proc.stderr
    assert "the results cover the packets before the break" in proc.stderr
    assert "2 connections seen at both points" in proc.stdout
    assert "cut short" in proc.stdout  # the text says so too


def test_both_ends_of_an_ipv6_link_with_two_link_types(tmp_path):
    """Both ends of one veth (IPv6, pynetdicom: DCMTK 3.6.7 cannot do IPv6): NEAR captured
    as Ethernet on a's end, FAR as Linux cooked (``-i any``) in b. Nothing happens on a
    wire, so nothing may be reported but the association and the (tiny) delay."""
    from netns import VethPair

    files = [p for p, _ in make_ct.make_series(str(tmp_path / "img"), 3, 64, series=43)]
    near, far = str(tmp_path / "near6.pcap"), str(tmp_path / "far6.pcap")
    with VethPair() as net:
        scp = scenarios.start_pyscp(net, "b", str(tmp_path), {"ae_title": "V6SCP", "bind": "::"})
        with net.capture("a", near, bpf="tcp"), net.capture("b", far, iface="any", bpf="tcp"):
            argv = [sys.executable, "-m", "pynetdicom", "storescu", "-aet", "STORESCU6"]
            argv += ["-aec", "V6SCP", "-xe", "-cx", net.ip6("b"), str(scenarios.SCP_PORT)]
            scenarios._check(net.run("a", [*argv, *files]), "pynetdicom storescu")
        scenarios.stop(scp)
    links = [_tshark_fields(p, "frame.protocols")[0].split(":")[0] for p in (near, far)]
    assert links[0] == "eth" and links[1] in ("sll", "sll2"), links
    proc = correlate(near, far, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    (c,) = result["connections"]
    assert c["near"]["client"].startswith("[fd00::1]:") and not c["translated"]
    assert c["matched_by"] == ["ISN", "first data segments"] and c["client_side"] == "near"
    assert c["association"]["calling_ae"] == "STORESCU6"
    assert c["association"]["called_ae"] == "V6SCP"
    totals = result["totals"]
    assert (totals["lost"], totals["added"], totals["payload_changed"]) == (0, 0, 0)
    assert totals["option_changes"] == {} and totals["injected_resets"] == 0
    for d in c["directions"].values():
        # tshark as second opinion: both points saw every segment of the direction.
        assert d["segments_upstream"] == d["segments_downstream"]
    sent = len(_tshark_fields(near, "tcp.len"))
    assert sent == len(_tshark_fields(far, "tcp.len"))
    assert sent == sum(d["segments_upstream"] for d in c["directions"].values())


def _tshark_fields(path: str, field: str) -> list[str]:
    out = subprocess.run(
        ["tshark", "-r", path, "-Y", "tcp", "-T", "fields", "-e", field],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def test_captures_started_midstream_are_compared_by_absolute_numbers(routed):
    """Both captures cut at the same instant inside the first association (editcap -A):
    neither point saw its SYN, so it is matched by its data, numbered as seen (NAT keeps
    sequence numbers), and what was lost after the cut is what the full run found then."""
    wd, run, result = routed
    first, second = result["connections"]
    cut_at = (
        first["near"]["first_ts"] + (second["near"]["first_ts"] - first["near"]["first_ts"]) / 2
    )
    cut = {}
    for point in ("near", "far"):
        cut[point] = str(wd / f"{point}-midstream.pcap")
        subprocess.run(["editcap", "-A", f"{cut_at:.6f}", run[point], cut[point]], check=True)
    proc = correlate(cut["near"], cut["far"], "--json")
    assert proc.returncode == 0, proc.stderr
    late = json.loads(proc.stdout)
    c = late["connections"][0]
    assert c["matched_by"] == ["first data segments"]
    assert c["sequence_basis"] == {"c2s": "absolute", "s2c": "absolute"}
    assert c["client_side"] == "near"  # no SYN: the server is the lower port (11112)
    assert c["near"]["server"].endswith(f":{scenarios.SCP_PORT}")

    def lost(conn: dict) -> set:
        return {(i["ts"], i["len"], i["seen_at"]) for d in conn["directions"].values()
                for i in d["lost_segments"]}  # fmt: skip

    # 10 ms of slack each side of the cut (both points share the host's clock): a segment
    # seen just before it at one point and just after at the other is not lost.
    after = {x for x in lost(first) if x[0] > cut_at + 0.01}
    assert after and after <= lost(c) <= {x for x in lost(first) if x[0] >= cut_at - 0.01}
    # the second association is wholly after the cut: the same findings, except the delay
    # statistics, which move with the clock offset (estimated over every connection seen,
    # so the cut first connection changes it by microseconds)

    def without_delay(directions: dict) -> dict:
        return {k: {f: v for f, v in d.items() if f != "delay"} for k, d in directions.items()}

    assert without_delay(late["connections"][1]["directions"]) == without_delay(
        second["directions"]
    )


def _rewrite(src: str, dst: str, change) -> None:
    """Copy a capture, ``change(tcp)`` applied to every TCP segment (checksums redone)."""
    import dpkt

    with open(src, "rb") as fin, open(dst, "wb") as fout:
        reader = dpkt.pcap.Reader(fin)
        writer = dpkt.pcap.Writer(fout, linktype=reader.datalink())
        for ts, frame in reader:
            eth = dpkt.ethernet.Ethernet(frame)
            tcp = getattr(eth.data, "data", None)
            if isinstance(tcp, dpkt.tcp.TCP):
                change(tcp)
                tcp.sum = 0  # recomputed by dpkt
                eth.data.sum = 0
            writer.writepkt(bytes(eth), ts)


def _rewrite_sequence_numbers(src: str, dst: str, shift: dict[int, int]) -> None:
    """What a sequence-randomising firewall (pf ``modulate state``, Cisco ASA) does: every
    connection's numbers moved by a constant per direction (the segments' own, and the acks
    of the other direction); ``shift``: server port -> shift of the server's numbers (the
    client's move the other way)."""
    import dpkt

    def change(tcp) -> None:
        to_server = tcp.dport in shift
        move = shift.get(tcp.dport if to_server else tcp.sport, 0)
        mine, theirs = (-move, move) if to_server else (move, -move)
        tcp.seq = (tcp.seq + mine) & 0xFFFFFFFF
        if tcp.flags & dpkt.tcp.TH_ACK:
            tcp.ack = (tcp.ack + theirs) & 0xFFFFFFFF

    _rewrite(src, dst, change)


def test_a_payload_changed_between_the_points_is_found_in_its_message(routed):
    """What an application-layer gateway does: one byte of data changed in flight (here:
    in every C-STORE-RSP the PACS sends, which a real ALG would not dare; the copy of the
    real FAR capture is the changed wire)."""
    wd, run, result = routed
    changed = str(wd / "far-changed.pcap")
    hits = []

    def change(tcp) -> None:
        if tcp.sport == scenarios.SCP_PORT and len(tcp.data) == 158:  # a C-STORE-RSP PDU
            tcp.data = tcp.data[:-1] + bytes([tcp.data[-1] ^ 0xFF])
            hits.append(tcp.seq)

    _rewrite(run["far"], changed, change)
    assert hits
    proc = correlate(run["near"], changed, "--json")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    # Each response seen once at each point is compared; one lost and resent (every 4th
    # data segment from the PACS is dropped) is counted as lost instead.
    assert len(set(hits)) / 2 <= seen["totals"]["payload_changed"] <= len(set(hits))
    for c in seen["connections"]:
        assert c["directions"]["c2s"]["payload_changed"] == 0
        for item in c["directions"]["s2c"]["payload_changed_segments"]:
            assert item["len"] == 158 and item["dicom"].startswith("C-STORE-RSP to message")
    assert seen["totals"]["lost"] == result["totals"]["lost"]


def test_sequence_numbers_rewritten_between_the_points_are_seen_through(routed):
    wd, run, result = routed
    moved = str(wd / "far-moved.pcap")
    _rewrite_sequence_numbers(run["far"], moved, {scenarios.SCP_PORT: 0x12345678})
    proc = correlate(run["near"], moved, "--json")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert [c["matched_by"] for c in seen["connections"]] == [["first data segments"]] * 2
    for c in seen["connections"]:
        assert c["isn_rewritten"] == ["c2s", "s2c"]
    assert seen["totals"] == result["totals"]


def test_the_segment_cap_is_counted_and_stops_the_comparison(routed):
    from dicomsniffd.config import load_config
    from dicomsniffd.correlate.run import correlate_files
    from dicomsniffd.correlate.text import render_text

    _wd, run, result = routed
    capped = correlate_files(run["near"], run["far"], load_config(None), max_segments=40)
    assert capped["near"]["segments_over_cap"] > 0 and capped["far"]["segments_over_cap"] > 0
    assert "were not kept; those directions were compared up to the cap" in render_text(capped)
    # Past the cap nothing is called lost or added: what is left is a part of the full run.
    assert capped["totals"]["lost"] <= result["totals"]["lost"]
    assert capped["totals"]["added"] <= result["totals"]["added"]
    capped_directions = 0
    for c, full in zip(capped["connections"], result["connections"], strict=True):
        for name, d in c["directions"].items():
            if d["over_cap"]["near"] or d["over_cap"]["far"]:
                capped_directions += 1
            whole = {_ident(i) for i in full["directions"][name]["lost_segments"]}
            assert {_ident(i) for i in d["lost_segments"]} <= whole
    assert capped_directions > 0


def _ident(item: dict) -> tuple:
    return item["rel_seq"], item["len"], item["flags"], item["seen_at"]


if __name__ == "__main__":  # exploration: python tests/test_correlate_routed.py DIR
    out = capture_routed(Path(sys.argv[1]))
    print({k: v for k, v in out.items() if k not in ("ok", "cut")})
    print(out["cut"].stdout[-500:], out["cut"].stderr[-500:])
