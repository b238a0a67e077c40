"""Byte-exact checks against layouts written out by hand from RFC 7011 and RFC 3954."""

from __future__ import annotations

import struct

import pytest

from ipfix.errors import EncodeError
from ipfix.ie import DEFAULT_REGISTRY as REG
from ipfix.ie import build_registry
from ipfix.message import IpfixPacker, ipfix_template_record
from ipfix.netflow9 import Netflow9Packer, v9_template_record
from ipfix.template import RecordEncoder, make_template, utf8_prefix

pytestmark = pytest.mark.usefixtures("encoder_impl")

PEN = (57011).to_bytes(4, "big")  # 0x0000DEB3


def small_template() -> object:
    return make_template(256, [REG["octetDeltaCount"], REG["httpRequestHost"],
                               REG["uploadedBytes"], REG["sourceIPv4Address"]])


def test_registry_numbers_match_iana_and_the_issue() -> None:
    expected = {
        "octetDeltaCount": 1, "protocolIdentifier": 4, "sourceTransportPort": 7,
        "sourceIPv4Address": 8, "destinationTransportPort": 11, "destinationIPv4Address": 12,
        "sourceIPv6Address": 27, "destinationIPv6Address": 28, "flowEndReason": 136,
        "flowId": 148, "observationDomainId": 149, "flowStartMilliseconds": 152,
        "flowEndMilliseconds": 153, "postNATDestinationIPv4Address": 226,
        "postNAPTDestinationTransportPort": 228, "initiatorOctets": 231, "responderOctets": 232,
        "postNATDestinationIPv6Address": 282, "httpStatusCode": 457, "httpRequestMethod": 459,
        "httpRequestHost": 460, "httpRequestTarget": 461, "httpMessageVersion": 462,
        "httpUserAgent": 468, "httpContentType": 469, "httpReasonPhrase": 470,
        "exportedOctetTotalCount": 40, "exportedMessageTotalCount": 41,
        "exportedFlowRecordTotalCount": 42, "notSentFlowTotalCount": 166,
        "informationElementId": 303, "informationElementDataType": 339,
        "informationElementName": 341, "informationElementSemantics": 344,
        "privateEnterpriseNumber": 346,
    }
    for name, element_id in expected.items():
        assert REG[name].element_id == element_id, name
        assert REG[name].enterprise_number == 0, name
    ours = {"uploadedBytes": 1, "downloadedBytes": 2, "httpRequestQuery": 3,
            "httpXForwardedFor": 4, "httpReferrer": 5, "httpCookie": 6,
            "httpResponseContentType": 7, "httpTerminationStateCode": 8}
    for name, element_id in ours.items():
        assert REG[name].key == (57011, element_id), name
    assert REG["httpStatusCode"].default_length == 2


def test_enterprise_number_is_a_parameter_not_a_global() -> None:
    other = build_registry(32473)
    assert other["httpRequestQuery"].key == (32473, 3)
    assert REG["httpRequestQuery"].key == (57011, 3)
    with pytest.raises(ValueError):
        build_registry(0)


def test_ipfix_template_record_layout() -> None:
    # RFC 7011 §3.4.1: template id, field count, then (id, length[, PEN]) per field
    expected = (b"\x01\x00\x00\x04"
                b"\x00\x01\x00\x08"
                b"\x01\xcc\xff\xff"
                b"\x80\x01\x00\x08" + PEN +
                b"\x00\x08\x00\x04")
    assert ipfix_template_record(small_template()) == expected  # type: ignore[arg-type]


def test_ipfix_options_template_record_layout() -> None:
    template = make_template(300, [REG["observationDomainId"], REG["exportedMessageTotalCount"]],
                             scope_field_count=1)
    # RFC 7011 §3.4.2.2: template id, field count, scope field count
    assert ipfix_template_record(template) == (
        b"\x01\x2c\x00\x02\x00\x01" b"\x00\x95\x00\x04" b"\x00\x29\x00\x08")


def test_data_record_layout_with_variable_length_string() -> None:
    encoder = RecordEncoder(small_template())  # type: ignore[arg-type]
    record = encoder.encode((300, "h\u00e9llo", 5, "10.1.2.3"))
    assert record == (struct.pack("!Q", 300) + b"\x06" + "h\u00e9llo".encode()
                      + struct.pack("!Q", 5) + bytes([10, 1, 2, 3]))


@pytest.mark.parametrize(("size", "prefix"), [
    (0, b"\x00"), (254, b"\xfe"), (255, b"\xff\x00\xff"), (256, b"\xff\x01\x00"),
    (65535, b"\xff\xff\xff"),
])
def test_variable_length_prefix(size: int, prefix: bytes) -> None:
    # RFC 7011 §7: one length byte below 255, else 255 and a two-byte length
    template = make_template(256, [REG["httpRequestTarget"]])
    encoder = RecordEncoder(template, {"httpRequestTarget": 65535})
    assert encoder.encode(("a" * size,)) == prefix + b"a" * size


def test_utf8_truncation_never_splits_a_code_point() -> None:
    text = "a\u00e9\u20ac\U0001f600".encode()  # 1 + 2 + 3 + 4 bytes
    assert [len(utf8_prefix(text, n)) for n in range(11)] == [0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10]
    template = make_template(256, [REG["httpRequestHost"]])
    encoder = RecordEncoder(template, {"httpRequestHost": 5})
    assert encoder.encode(("\u20ac\u20ac",)) == b"\x03" + "\u20ac".encode()
    assert encoder.truncations.count == 1


def test_lone_surrogates_become_replacement_characters() -> None:
    template = make_template(256, [REG["httpRequestHost"]])
    bad = b"caf\xe9".decode("utf-8", "surrogateescape")
    record = RecordEncoder(template).encode((bad,))
    assert record[1:].decode("utf-8") == "caf\ufffd"


def test_bad_values_raise_encode_error() -> None:
    encoder = RecordEncoder(small_template())  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        encoder.encode((-1, "", 0, "10.0.0.1"))
    with pytest.raises(EncodeError):
        encoder.encode((1, "", 2**64, "10.0.0.1"))
    with pytest.raises(EncodeError):
        encoder.encode((1, "", 0, "not-an-address"))
    with pytest.raises(EncodeError):
        encoder.encode((1, ""))


def test_ipfix_message_header_and_set() -> None:
    packer = IpfixPacker(1400, observation_domain_id=7)
    packer.add(256, b"\x01\x02\x03", is_data=True, is_flow=True, now_ms=1_700_000_000_999)
    packer.add(256, b"\x04", is_data=True, is_flow=True, now_ms=1_700_000_000_999)
    packer.close(1_700_000_001_500)
    (datagram,) = packer.take()
    message, flows = datagram.payload, datagram.flow_records
    assert flows == 2
    # RFC 7011 §3.1 header: version 10, length, export time (s), sequence, domain; §3.3.2 set
    assert message == (b"\x00\x0a\x00\x18" + struct.pack("!I", 1_700_000_001) + b"\x00\x00\x00\x00"
                       b"\x00\x00\x00\x07" b"\x01\x00\x00\x08" b"\x01\x02\x03\x04")
    packer.add(2, b"\x01\x00\x00\x01\x00\x01\x00\x08", is_data=False, now_ms=0)
    packer.add(256, b"\x05", is_data=True, now_ms=0)
    packer.close(0)
    second = packer.take()[0].payload
    assert second[8:12] == b"\x00\x00\x00\x02"  # two data records were sent before it


def test_netflow9_header_count_padding_and_template() -> None:
    packer = Netflow9Packer(1400, source_id=9, boot_time_ms=1_000)
    template = make_template(256, [REG["octetDeltaCount"], REG["uploadedBytes"]])
    packer.add(0, v9_template_record(template), is_data=False, now_ms=0)
    packer.add(256, b"\x01\x02\x03\x04\x05", is_data=True, now_ms=0)
    packer.close(61_000)
    message = packer.take()[0].payload
    # RFC 3954 §5.1 header: version, count (all records), sysUpTime, secs, sequence, source id
    assert message[:20] == struct.pack("!HHIIII", 9, 2, 60_000, 61, 0, 9)
    # §5.2: template flowset 0; the enterprise element takes 32768 + id
    assert message[20:36] == (b"\x00\x00\x00\x10" b"\x01\x00\x00\x02" b"\x00\x01\x00\x08"
                              b"\x80\x01\x00\x08")
    # data flowset padded to 4 bytes, the length including the padding
    assert message[36:] == b"\x01\x00\x00\x0c" b"\x01\x02\x03\x04\x05" b"\x00\x00\x00"
    packer.add(256, b"\x01", is_data=True, now_ms=0)
    packer.close(0)
    second = packer.take()[0].payload
    assert struct.unpack("!I", second[12:16]) == (1,)  # v9 counts packets


def test_netflow9_options_template_uses_byte_lengths() -> None:
    from ipfix.options import netflow9_statistics_template

    record = v9_template_record(netflow9_statistics_template(REG))
    template_id, scope_length, option_length = struct.unpack("!HHH", record[:6])
    assert (template_id, scope_length, option_length) == (260, 4, 24)
    assert record[6:10] == b"\x00\x01\x00\x04"  # scope System, 4 bytes


def test_packer_never_exceeds_the_cap_and_never_splits_a_record() -> None:
    packer = IpfixPacker(100, observation_domain_id=1)
    records = [bytes([n]) * (n % 70 + 1) for n in range(200)]
    for record in records:
        packer.add(256 + len(record) % 3, record, is_data=True, now_ms=0)
    packer.close(0)
    messages = [d.payload for d in packer.take()]
    assert all(len(m) <= 100 for m in messages)
    rebuilt: dict[int, list[bytes]] = {256: [], 257: [], 258: []}
    for message in messages:
        offset = 16
        while offset < len(message):
            set_id, set_length = struct.unpack("!HH", message[offset: offset + 4])
            rebuilt[set_id].append(message[offset + 4: offset + set_length])
            offset += set_length
    for set_id, parts in rebuilt.items():  # in order within each set id
        assert b"".join(parts) == b"".join(r for r in records if 256 + len(r) % 3 == set_id)
    with pytest.raises(ValueError):
        packer.add(256, b"x" * 81, is_data=True, now_ms=0)


@pytest.mark.parametrize("make", [lambda: IpfixPacker(1400, observation_domain_id=3),
                                  lambda: Netflow9Packer(1400, source_id=3, boot_time_ms=5_000)])
def test_a_record_that_fills_a_message_alone_is_framed_as_add_and_close_frame_it(
        make: object) -> None:
    """add_flow sends a record too big to share a message with another of its size at once;
    the bytes are those of the general path, which closes that message at the next add."""
    import random

    solo, general = make(), make()  # type: ignore[operator]
    rng = random.Random(7)
    for step in range(300):
        size = rng.randrange(solo.solo_size + 1, solo.record_budget + 1)
        record, set_id, now = rng.randbytes(size), 256 + rng.randrange(4), 1_000 * step
        solo.add_flow(set_id, record, now)
        general.add(set_id, record, is_data=True, is_flow=True, now_ms=now)
        general.close(now)  # what the next add or the flush timer would do
        assert not solo.holds_records  # nothing waits for a timer
    assert solo.take() == general.take()
    assert solo.closed_messages == general.closed_messages == 300
    # after templates the record joins them if it fits, and waits for the timer with them
    solo.add(0 if isinstance(solo, Netflow9Packer) else 2, b"\x01\x00\x00\x01\x00\x01\x00\x04",
             is_data=False, now_ms=0)
    solo.add_flow(256, b"x" * (solo.solo_size + 1), 0)
    assert solo.holds_records and solo.take() == []
