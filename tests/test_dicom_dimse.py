"""Command set decoding against pynetdicom's encoder, status classes, UID names."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from test_dicom_streams import CT, IVLE

from dicomsniffd.dicom.dimse import CommandSetError, command_shape, decode_command, status_class
from dicomsniffd.dicom.uids import uid_name


def _encode(**elements) -> bytes:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    body = fp.getvalue()
    return b"\x00\x00\x00\x00\x04\x00\x00\x00" + len(body).to_bytes(4, "little") + body


def test_decode_move_response_fields():
    raw = _encode(
        AffectedSOPClassUID="1.2.840.10008.5.1.4.1.2.2.2",
        CommandField=0x8021,
        MessageIDBeingRespondedTo=12,
        CommandDataSetType=0x0101,
        Status=0xB000,
        ErrorComment="x" * 100,
        NumberOfRemainingSuboperations=0,
        NumberOfCompletedSuboperations=4,
        NumberOfFailedSuboperations=1,
        NumberOfWarningSuboperations=2,
    )
    cmd = decode_command(raw)
    assert cmd.is_response and cmd.name == "C-MOVE" and not cmd.has_dataset
    assert (cmd.message_id_being_responded_to, cmd.status) == (12, 0xB000)
    assert (cmd.remaining, cmd.completed, cmd.failed, cmd.warning) == (0, 4, 1, 2)
    assert len(cmd.error_comment) == 64


def test_decode_requested_sop_and_instance_uid_policy():
    raw = _encode(
        RequestedSOPClassUID="1.2.840.10008.5.1.1.40",
        CommandField=0x0130,
        MessageID=3,
        CommandDataSetType=0x0000,
        RequestedSOPInstanceUID="1.2.3",
    )
    cmd = decode_command(raw)
    assert (cmd.name, cmd.sop_class_uid, cmd.has_dataset, cmd.requested_sop_instance_uid) == (
        "N-ACTION",
        "1.2.840.10008.5.1.1.40",
        True,
        "",
    )
    assert decode_command(raw, keep_instance_uids=True).requested_sop_instance_uid == "1.2.3"


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x00\x00",  # truncated header
        b"\x08\x00\x10\x00\x02\x00\x00\x00ab",  # group 0008 in a command set
        b"\x00\x00\x00\x01\xff\x00\x00\x00",  # length overruns
        b"\x00\x00\x10\x01\x02\x00\x00\x00\x01\x00",  # no CommandField
        b"\x00\x00\x00\x01\x03\x00\x00\x00\x01\x00\x00",  # CommandField not 2 bytes
    ],
)
def test_malformed_command_sets(raw):
    with pytest.raises(CommandSetError):
        decode_command(raw)


@pytest.mark.parametrize(
    "field,status,expected",
    [
        (0x8001, 0x0000, "success"),
        (0x8001, 0xA700, "failure"),
        (0x8001, 0xA900, "failure"),
        (0x8001, 0xB000, "warning"),  # coercion of data elements
        (0x8001, 0xB007, "warning"),
        (0x8001, 0xB006, "warning"),
        (0x8001, 0xC000, "failure"),
        (0x8001, 0xFF00, "failure"),  # C-STORE has no pending responses
        (0x8021, 0xB000, "warning"),  # sub-operations complete, some failed
        (0x8021, 0xFF00, "pending"),
        (0x8010, 0xFF00, "pending"),
        (0x8020, 0xFF01, "pending"),
        (0x8020, 0xFE00, "cancel"),
        (0x8021, 0xA801, "failure"),  # move destination unknown
        (0x8030, 0x0122, "failure"),
        (0x8130, 0x0001, "warning"),
        (0x8120, 0x0107, "warning"),
        (0x8120, 0x0116, "warning"),
        (0x8120, 0x0106, "failure"),
        (0x8140, 0x0213, "failure"),
        (0x8140, 0x1234, "failure"),
    ],
)
def test_status_classes(field, status, expected):
    assert status_class(field, status) == expected


def test_uid_names():
    assert uid_name(CT) == "CTImageStorage"
    assert uid_name(IVLE) == "ImplicitVRLittleEndian"
    assert uid_name("1.3.6.1.4.1.5962.99.1") == "private"
    assert uid_name("") == "unknown"
    assert uid_name("not a uid") == "unknown"
    assert uid_name("1.2.840.10008.5.1.4.1.1.999999") == "unknown"  # never a UID as a label


def _store_rq(instance: str, mid: int = 1) -> bytes:
    return _encode(
        AffectedSOPClassUID=CT,
        CommandField=0x0001,
        MessageID=mid,
        Priority=0,
        CommandDataSetType=0x0000,
        AffectedSOPInstanceUID=instance,
    )


def test_command_shape_leaves_out_only_what_decoding_does_not_read():
    """Two C-STORE-RQs naming different instances (so also of different group lengths)
    share a shape, and decode alike when instance UIDs are not kept; any other difference
    (the message ID) is a different shape; no instance, a second instance element or bytes
    that are not elements give no shape."""
    short, long_ = _store_rq("1.2.3"), _store_rq("1.2.3.4.5.6.7.8.9.10")
    assert short[8:12] != long_[8:12]  # the CommandGroupLength values differ
    assert command_shape(short) == command_shape(long_) is not None
    assert decode_command(short) == decode_command(long_)
    assert command_shape(_store_rq("1.2.3", mid=2)) != command_shape(short)
    echo = _encode(AffectedSOPClassUID="1.2.840.10008.1.1", CommandField=0x0030,
                   MessageID=1, CommandDataSetType=0x0101)  # fmt: skip
    assert command_shape(echo) is None
    twice = short + short[-(8 + 6) :]  # the instance element ("1.2.3" padded) again
    assert command_shape(twice) is None
    assert command_shape(short[:-3]) is None  # the last element overruns the bytes
    assert command_shape(b"\x08\x00" + short[2:]) is None  # not group 0000


def test_command_shape_leaves_out_the_requested_instance_too():
    """N-ACTION-RQs naming other instances (Requested SOP Instance UID) share a shape that
    holds no instance UID, and decode alike when UIDs are not kept; a Requested and an
    Affected instance element may both be cut, each once."""

    def n_action(instance: str, affected: str | None = None) -> bytes:
        fields = dict(RequestedSOPClassUID="1.2.840.10008.1.20.1", CommandField=0x0130,
                      MessageID=7, CommandDataSetType=0x0101)  # fmt: skip
        if affected is not None:
            fields["AffectedSOPInstanceUID"] = affected
        return _encode(**fields, RequestedSOPInstanceUID=instance)

    a, b = n_action("1.2.826.0.1.3680043.2.1"), n_action("1.2.826.0.1.3680043.2.99999")
    assert command_shape(a) == command_shape(b) is not None
    assert b"3680043" not in command_shape(a)
    assert decode_command(a) == decode_command(b)
    assert decode_command(a, keep_instance_uids=True) != decode_command(b, keep_instance_uids=True)
    both = n_action("1.2.3.4", affected="1.2.3.5")
    assert b"1.2.3" not in command_shape(both)
    # what is left is what decoding reads, so the same shape means the same Command
    assert command_shape(both) == command_shape(a) and decode_command(both) == decode_command(a)
