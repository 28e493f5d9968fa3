"""Which software each AE runs: the product table, the dicom_implementation_info gauge,
the summary's rollup (byte-level and event-level tests; real software in
tests/test_implementations_real.py)."""

from __future__ import annotations

import dataclasses

from metrics_events import accepted, families, request
from sink_fakes import Flow
from summary_fakes import capture_info

from dicomsniffd.config import MetricsConfig
from dicomsniffd.dicom.events import AssociationEnded, UserInformation
from dicomsniffd.dicom.implementations import PRODUCTS, describe, product_name
from dicomsniffd.sinks.metrics import MetricsStore
from dicomsniffd.sinks.summary import Summary

DCMTK_367 = "1.2.276.0.7230010.3.0.3.6.7"
INFO = "dicom_implementation_info"


def test_product_roots() -> None:
    assert product_name(DCMTK_367) == "DCMTK"
    assert product_name("1.2.826.0.1.3680043.9.3811.3.0.4") == "pynetdicom"
    assert product_name("1.2.40.0.13.1.3") == "dcm4che 3/5"  # the longer root wins
    assert product_name("1.2.40.0.13.1.9") == "dcm4che"
    assert product_name("1.3.6.1.4.1.30071.8") == "fo-dicom"
    # a root is a whole component prefix: 1.2.276.0.72300101 is not under 1.2.276.0.7230010
    assert product_name("1.2.276.0.72300101.1") == ""
    assert product_name("") == ""
    assert len({p.root for p in PRODUCTS}) == len(PRODUCTS)


def test_describe() -> None:
    assert describe(DCMTK_367, "OFFIS_DCMTK_367").startswith("DCMTK (")
    assert describe("1.2.3.4", "MOD_1") == "1.2.3.4, version name MOD_1"
    assert describe("", "") == "not sent"
    assert describe("", "X") == "no Implementation Class UID, version name X"


def _info(store: MetricsStore) -> dict[tuple, float]:
    found = families(store).get(INFO)
    if found is None:
        return {}
    return {
        (
            s.labels["ae"],
            s.labels["side"],
            s.labels["implementation_class_uid"],
            s.labels["implementation_version_name"],
        ): s.value
        for s in found.samples
    }


def _with_software(event, uid: str, version: str):
    return dataclasses.replace(
        event,
        user_info=UserInformation(
            implementation_class_uid=uid, implementation_version_name=version
        ),
    )


def test_info_gauge_one_series_per_ae_and_side_latest_wins() -> None:
    store = MetricsStore(MetricsConfig())
    flow = Flow()
    store.handle(_with_software(request(), DCMTK_367, "OFFIS_DCMTK_367"), flow)
    store.handle(_with_software(accepted(), "1.2.3", "PACS_1"), flow)
    assert _info(store) == {
        ("MODALITY", "requestor", DCMTK_367, "OFFIS_DCMTK_367"): 1,
        ("PACS", "acceptor", "1.2.3", "PACS_1"): 1,
    }
    # the modality is upgraded: its old series goes, the new one is 1
    store.handle(_with_software(request(200.0), "1.2.276.0.7230010.3.0.3.6.8", "V368"), flow)
    assert _info(store)[("MODALITY", "requestor", "1.2.276.0.7230010.3.0.3.6.8", "V368")] == 1
    assert len(_info(store)) == 2


def test_info_gauge_is_bounded_by_the_ae_cap() -> None:
    store = MetricsStore(MetricsConfig(max_ae_titles=2))
    for n in range(6):
        title = f"MOD{n}"
        flow = Flow(calling_ae=title, calling_ae_label=store.ae_label(title, "calling_ae"))
        store.handle(_with_software(request(), f"1.2.3.{n}", f"V{n}"), flow)
    series = _info(store)
    assert {key[0] for key in series} == {"MOD0", "MOD1", "other"}
    assert len(series) == 3  # "other" holds the latest software only
    overflow = families(store)["dicomsniffd_label_overflow_total"]
    assert any(s.labels["label"] == "calling_ae" and s.value == 4 for s in overflow.samples)


def test_info_gauge_stays_1_when_workers_saw_the_same_software() -> None:
    parent = MetricsStore(MetricsConfig())
    for worker in ("0", "1"):
        store = MetricsStore(MetricsConfig())
        store.handle(_with_software(request(), DCMTK_367, "OFFIS_DCMTK_367"), Flow())
        parent.merge_snapshot(worker, store.snapshot())
    assert _info(parent) == {("MODALITY", "requestor", DCMTK_367, "OFFIS_DCMTK_367"): 1}


def test_summary_keeps_both_sides_also_for_an_unanswered_request() -> None:
    summary = Summary()
    answered, unanswered = Flow(flow_id=1), Flow(flow_id=2)
    summary.handle(_with_software(request(), DCMTK_367, "OFFIS_DCMTK_367"), answered)
    summary.handle(_with_software(accepted(), "1.2.3", "PACS_1"), answered)
    summary.handle(_with_software(request(101.0), DCMTK_367, "OFFIS_DCMTK_367"), unanswered)
    summary.handle(AssociationEnded(131.0, "reset", 30.0), unanswered)
    data = summary.to_dict(capture_info())
    first, second = data["associations"]
    assert first["requestor_implementation"]["product"] == "DCMTK"
    assert first["acceptor_implementation"]["version_name"] == "PACS_1"
    assert second["acceptor_implementation"] is None
    rows = {(r["ae"], r["side"]): r for r in data["implementations"]}
    assert rows[("MODALITY", "requestor")]["associations"] == 2
    assert rows[("PACS", "acceptor")]["product"] == ""
    text = summary.render_text(capture_info())
    assert "Software each AE runs" in text
    assert "class UID 1.2.3, max PDU none sent" in text
