"""Fuzzing in CI: structure-aware hypothesis mutations of valid DICOM streams, and a short
coverage-guided atheris run over the whole offline pipeline (fuzz/README.md runs it long).

The invariants (fuzz/harness.py): no exception escapes decode, flows, the DICOM core, the
sinks or the output renderers; no exception is even *contained* (a parser-exception
ProtocolError or a flow handler error is a bug the containment hid); buffers stay within
max_command_bytes / max_association_pdu_bytes / memcap / capacity / max_pending.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "fuzz"))

import dicomgen  # noqa: E402
import harness  # noqa: E402
from dicomgen import Pdu  # noqa: E402

from dicomsniffd.dicom.events import DimseTransaction  # noqa: E402

SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


# --------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------
@st.composite
def base_streams(draw) -> list[Pdu]:
    n = draw(st.integers(0, 3))
    statuses = tuple(
        draw(
            st.lists(
                st.sampled_from([0x0000, 0xA700, 0xB000, 0xC000, 0x0110]), min_size=n, max_size=n
            )
        )
    )
    size = draw(st.integers(0, 6000))
    user = draw(st.sampled_from([None, "fuzz-user"]))
    pdus = dicomgen.store_association(
        n,
        size=size,
        statuses=statuses,
        user=user,
        passcode="pw" if user else None,
        echo=draw(st.booleans()),
    )
    ending = draw(st.sampled_from(["release", "abort", "none", "reject"]))
    if ending == "abort":
        pdus[-2:] = [dicomgen.abort(draw(st.integers(0, 1)), 2, 6)]
    elif ending == "none":
        pdus = pdus[:-2]
    elif ending == "reject":
        pdus = [pdus[0], dicomgen.associate_rj()]
    return pdus


LENGTH_LIES = st.one_of(
    st.integers(0, 16),
    st.integers(-8, 8),
    st.sampled_from([0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 65536, 65537, 16 * 1024 * 1024 + 1]),
)
MUTATIONS = (
    "type",
    "pdu_length",
    "item_length",
    "pdv_length",
    "pdv_flags",
    "pdv_ctx",
    "item_type",
    "truncate",
    "duplicate",
    "reorder",
    "drop",
    "direction",
)


@st.composite
def mutated_streams(draw) -> list[Pdu]:
    """A valid stream with 0..6 structural mutations."""
    pdus = [p.copy() for p in draw(base_streams())]
    for _ in range(draw(st.integers(0, 6))):
        if not pdus:
            break
        i = draw(st.integers(0, len(pdus) - 1))
        p = pdus[i]
        kind = draw(st.sampled_from(MUTATIONS))
        if kind == "type":
            p.ptype = draw(st.one_of(st.integers(1, 7), st.integers(0, 255)))
        elif kind == "pdu_length":
            lie = draw(LENGTH_LIES)
            p.length = lie if lie > 16 or lie < -8 else max(0, len(p.body()) + lie)
        elif kind == "item_length" and p.items:
            it = p.items[draw(st.integers(0, len(p.items) - 1))]
            it.length = (
                max(0, len(it.value) + draw(st.integers(-8, 8)))
                if draw(st.booleans())
                else draw(st.integers(0, 0xFFFF))
            )
        elif kind == "item_type" and p.items:
            # an unknown or misplaced item (PS3.8 9.3: skipped), a sub-item is in its value
            p.items[draw(st.integers(0, len(p.items) - 1))].itype = draw(st.integers(0, 255))
        elif kind in ("pdv_length", "pdv_flags", "pdv_ctx") and p.pdvs:
            v = p.pdvs[draw(st.integers(0, len(p.pdvs) - 1))]
            if kind == "pdv_length":
                lie = draw(LENGTH_LIES)
                v.length = lie if lie > 16 or lie < -8 else max(0, len(v.data) + 2 + lie)
            elif kind == "pdv_flags":
                v.mch = draw(st.integers(0, 255))
            else:
                v.ctx = draw(st.integers(0, 255))
        elif kind == "truncate":
            p.truncate = draw(st.integers(0, max(0, len(p.encode()) - 1)))
        elif kind == "duplicate":
            pdus.insert(i, p.copy())
        elif kind == "reorder":
            j = draw(st.integers(0, len(pdus) - 1))
            pdus[i], pdus[j] = pdus[j], pdus[i]
        elif kind == "drop":
            del pdus[i]
        elif kind == "direction":
            p.d = 1 - p.d
    return pdus


def chunked(draw, data: bytes) -> list[bytes]:
    """Split ``data`` at drawn points (segmentation must never change the outcome)."""
    sizes = draw(st.lists(st.integers(1, 3000), min_size=1, max_size=8))
    out, pos, k = [], 0, 0
    while pos < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[pos : pos + n])
        pos += n
        k += 1
    return out


@st.composite
def conv_inputs(draw) -> bytes:
    """CONV-mode fuzz input: mutated stream, chunked, with occasional gaps and expiries."""
    recs = []
    for d, raw in dicomgen.encode_stream(draw(mutated_streams())):
        for chunk in chunked(draw, raw):
            ctl = d
            if draw(st.integers(0, 30)) == 0:
                ctl |= harness.V_GAP
            if draw(st.integers(0, 60)) == 0:
                ctl |= harness.V_EXPIRE
            recs.append((ctl, chunk))
    return harness.encode_conv_records(recs)


@st.composite
def tcp_inputs(draw) -> bytes:
    """TCP-mode fuzz input: mutated stream, segmented, with TCP misbehaviour mixed in."""
    bends = st.sampled_from(
        [
            0,
            0,
            0,
            0,
            0,
            0,
            harness.C_SKIP,
            harness.C_HOLD,
            harness.C_CONFLICT,
            harness.C_DUP,
            harness.C_HOLD | harness.C_DUP,
            harness.C_CONFLICT | harness.C_HOLD,
        ]
    )
    recs = []
    for d, raw in dicomgen.encode_stream(draw(mutated_streams())):
        for chunk in chunked(draw, raw):
            recs.append((d | draw(bends), chunk))
    tail = draw(
        st.sampled_from(
            [
                [],
                [(harness.C_FIN, b""), (1 | harness.C_FIN, b"")],
                [(harness.C_RST, b"")],
                [(harness.C_JUMP, b"")],
            ]
        )
    )
    return harness.encode_tcp_records(recs + tail)


# --------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------
@settings(max_examples=150, **SETTINGS)
@given(conv_inputs())
def test_mutated_streams_core(data):
    """The sans-IO core (and the sinks fed its events) survive any mutation, bounded."""
    harness.run_input(data)


@settings(max_examples=120, **SETTINGS)
@given(tcp_inputs())
def test_mutated_streams_whole_pipeline(data):
    """Frames -> decode -> flows -> core -> metrics/event log/summary, all rendered."""
    harness.run_input(data)


@st.composite
def transfer_inputs(draw) -> bytes:
    """Large C-STOREs (PDVs up to 32 KB) in MSS-sized segments, so most segments are
    consumed by the compiled bypass, with TCP misbehaviour at random segments so that
    leases end at every kind of packet."""
    pdus = [
        dicomgen.associate_rq("FUZZSCU", "FUZZSCP"),
        dicomgen.associate_ac("FUZZSCU", "FUZZSCP"),
    ]
    for i in range(draw(st.integers(1, 3))):
        data = bytes(range(256)) * (draw(st.integers(8, 240)))
        fragment = draw(st.sampled_from([4000, 16372, 32000]))
        pdus += dicomgen.c_store(i + 1, data, fragment=fragment)
    pdus += [dicomgen.release_rq(), dicomgen.release_rp()]
    bends = st.sampled_from(
        [0] * 20 + [harness.C_SKIP, harness.C_HOLD, harness.C_CONFLICT, harness.C_DUP]
    )
    mss = draw(st.sampled_from([1448, 1460, 536, 1000]))
    recs = []
    for d, raw in dicomgen.encode_stream(pdus):
        recs += [(d | draw(bends), raw[p : p + mss]) for p in range(0, len(raw), mss)]
    tail = draw(st.sampled_from([[], [(harness.C_FIN, b""), (1 | harness.C_FIN, b"")]]))
    return harness.encode_tcp_records(recs + tail)


@settings(max_examples=60, **SETTINGS)
@given(st.one_of(transfer_inputs(), tcp_inputs()))
def test_mutated_streams_compiled_equals_pure_python(data):
    """The compiled hot path and pure Python render identical outputs for any mutation
    (lost, held back, overlapping, duplicated segments, FIN/RST, clock jumps)."""
    harness.run_input(data, differential=True)


@settings(max_examples=40, **SETTINGS)
@given(st.binary(min_size=1, max_size=4000))
def test_random_bytes_every_mode(data):
    for mode in range(3):
        harness.run_input(bytes([mode]) + data)


@settings(max_examples=60, **SETTINGS)
@given(base_streams(), st.data())
def test_valid_streams_any_segmentation_exact(pdus, data):
    """Control: without mutations, any segmentation gives exactly the driven outcome."""
    recs = []
    for d, raw in dicomgen.encode_stream(pdus):
        recs += [(d, c) for c in chunked(data.draw, raw)]
    events = harness.run_conversation(harness.encode_conv_records(recs))
    got = Counter(
        (e.command, e.status)
        for e in events
        if isinstance(e, DimseTransaction) and e.outcome == "answered"
    )
    want: Counter = Counter()
    acked = any(p.ptype == 0x02 for p in pdus)
    for p in pdus:
        for v in p.pdvs:
            if p.d == 1 and v.mch & 1 and acked:
                cmd = v.data
                field = int.from_bytes(
                    cmd[cmd.index(b"\x00\x00\x00\x01\x02\x00\x00\x00") + 8 :][:2], "little"
                )
                status = int.from_bytes(
                    cmd[cmd.index(b"\x00\x00\x00\x09\x02\x00\x00\x00") + 8 :][:2], "little"
                )
                want[({0x8001: "C-STORE", 0x8030: "C-ECHO"}[field], status)] += 1
    assert got == want


def test_mutated_memory_is_bounded():
    """Peak Python memory of the hostile corner cases stays near the configured caps.

    Every stream claims the largest lengths (4 GB PDU, 4 GB PDV, a command that never
    ends) and is fed in 1-byte to 1448-byte pieces; tracemalloc's peak must stay under
    a few times max_command_bytes + max_association_pdu_bytes, not grow with the input.
    """
    config = harness.fuzz_config()
    cap = config.dicom.max_command_bytes + config.dicom.max_association_pdu_bytes
    streams = []
    big = dicomgen.store_association(1, size=200_000, echo=False)
    big[-3].pdvs[0].length = 0xFFFFFFFF  # 4 GB PDV
    streams.append(big)
    rq = dicomgen.associate_rq()
    rq.length = 0xFFFFFFFF  # 4 GB association PDU
    streams.append([rq, *dicomgen.store_association(1, size=1000)[1:]])
    endless_cmd = [dicomgen.associate_rq(), dicomgen.associate_ac()]
    endless_cmd += [dicomgen.pdata(0, dicomgen.Pdv(1, 0x01, bytes(1000))) for _ in range(400)]
    streams.append(endless_cmd)
    peaks = []
    for pdus in streams:
        stream = b"".join(raw for _d, raw in dicomgen.encode_stream(pdus))
        recs = [(0, stream[i : i + 1448]) for i in range(0, len(stream), 1448)]
        conv_input = harness.encode_conv_records(recs)
        harness.run_conversation(b"", 1, config)  # warm up: imports, caches
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            harness.run_conversation(conv_input, 1, config)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        peaks.append((len(stream), peak))
        assert peak < 4 * cap + 256 * 1024, (len(stream), peak)
    print("stream bytes, tracemalloc peak:", peaks)


# --------------------------------------------------------------------------------------
# the coverage-guided fuzzer, briefly (fuzz/README.md: how to run it for an hour)
# --------------------------------------------------------------------------------------
def test_atheris_short_run(tmp_path):
    corpus = tmp_path / "corpus"
    subprocess.run(
        [sys.executable, str(REPO / "fuzz" / "make_corpus.py"), str(corpus)],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    p = subprocess.run(
        [
            sys.executable,
            str(REPO / "fuzz" / "fuzz_pipeline.py"),
            str(corpus),
            "-runs=500",
            "-max_len=65536",
            "-rss_limit_mb=2048",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    tail = p.stderr[-3000:]
    assert p.returncode == 0, tail
    # libFuzzer counts the seed corpus's inputs too when it loads them in more than one
    # pass, so "Done 503 runs" is a complete run as well: at least the 500 asked for.
    done = re.search(r"Done (\d+) runs", p.stderr)
    assert done and int(done.group(1)) >= 500, tail
    assert not list(tmp_path.glob("crash-*")), tail
