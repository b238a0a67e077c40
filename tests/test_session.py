"""The export session: templates first and refreshed, sequence numbers, statistics, limits."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfix.decoder import Decoder
from ipfix.http_record import HTTP_RECORDS
from ipfix.options import (
    EXPORTING_STATISTICS_TEMPLATE_ID,
    METERING_STATISTICS_TEMPLATE_ID,
    TYPE_INFO_TEMPLATE_ID,
)
from ipfix.session import ExportFormat, ExportSession, SessionConfig
from tests.conftest import NOW_MS, decode_all, flow_records, run_session, sample_record

pytestmark = pytest.mark.usefixtures("encoder_impl")


def set_ids(payload: bytes, header: int) -> list[int]:
    ids, offset = [], header
    while offset < len(payload):
        set_id, length = struct.unpack_from("!HH", payload, offset)
        ids.append(set_id)
        offset += length
    return ids


def test_first_message_carries_templates_before_data() -> None:
    _, datagrams = run_session([sample_record(0)])
    first = datagrams[0].payload
    # options templates (a set each: pmacct reads one per set), the RFC 5610 type
    # records, then the data templates that use them
    assert set_ids(first, 16)[:5] == [3, 3, 3, TYPE_INFO_TEMPLATE_ID, 2]
    messages = decode_all(datagrams)
    assert messages[0].template_ids[:3] == [260, 261, 262]
    assert sorted(messages[0].template_ids + messages[1].template_ids) == list(range(256, 263))
    assert len(flow_records(messages)) == 1


def test_netflow9_first_packet_carries_templates() -> None:
    _, datagrams = run_session([sample_record(0)], ExportFormat.NETFLOW9)
    assert set_ids(datagrams[0].payload, 20)[:2] == [1, 0]  # one options template
    assert len(flow_records(decode_all(datagrams))) == 1


def test_rfc5610_type_records_describe_every_enterprise_element() -> None:
    _, datagrams = run_session([sample_record(0)])
    types = [r.fields for m in decode_all(datagrams) for r in m.records
             if r.template_id == TYPE_INFO_TEMPLATE_ID]
    described = {(t["privateEnterpriseNumber"], t["informationElementId"]): t for t in types}
    assert set(described) == {(57011, n) for n in range(1, 12)}
    assert described[57011, 3]["informationElementName"] == "httpRequestQuery"
    assert described[57011, 3]["informationElementDataType"] == 13  # string
    assert described[57011, 1]["informationElementSemantics"] == 3  # deltaCounter


def test_collector_learns_unknown_enterprise_elements_from_type_records() -> None:
    _, datagrams = run_session([sample_record(0)], enterprise_number=4242)
    fields = flow_records(decode_all(datagrams))[0]  # the decoder's registry says 57011
    assert fields["httpRequestQuery"] == "page=2&sort=asc"
    assert fields["uploadedBytes"] == 34


def test_templates_refresh_on_timer_and_after_n_messages() -> None:
    session = ExportSession(SessionConfig(template_refresh_ms=10_000,
                                          template_refresh_messages=5, flush_interval_ms=1),
                            [HTTP_RECORDS],
                            NOW_MS)
    now = NOW_MS
    with_templates = []
    for index in range(40):
        session.add(sample_record(index), now)
        for datagram in session.poll(now + 1):
            # a refresh begins with the options templates (then type records, templates)
            with_templates.append(set_ids(datagram.payload, 16)[0] == 3)
        now += 2
    assert with_templates[0]
    carrying = [i for i, has in enumerate(with_templates) if has]
    gaps = [b - a for a, b in itertools.pairwise(carrying)]
    assert len(carrying) >= len(with_templates) // 6
    assert all(4 <= gap <= 6 for gap in gaps), gaps  # every 5 closed messages
    assert not session.poll(now)  # nothing due
    later = session.poll(now + 10_001)
    assert later and set_ids(later[0].payload, 16)[0] == 3


def test_templates_again_on_request() -> None:
    session = ExportSession(SessionConfig(), [HTTP_RECORDS], NOW_MS)
    session.flush(NOW_MS)
    session.request_templates()
    session.add(sample_record(), NOW_MS + 1)
    assert 2 in set_ids(session.flush(NOW_MS + 1)[0].payload, 16)


def test_ipfix_sequence_counts_all_data_records_before_the_message() -> None:
    _, datagrams = run_session([sample_record(i) for i in range(60)])
    messages = decode_all(datagrams)
    assert len(messages) > 3
    expected = 0
    for message in messages:
        assert message.sequence_number == expected
        expected += message.data_record_count


def test_netflow9_sequence_counts_packets_and_count_counts_records() -> None:
    _, datagrams = run_session([sample_record(i) for i in range(10)], ExportFormat.NETFLOW9)
    messages = decode_all(datagrams)
    for index, message in enumerate(messages):
        assert message.sequence_number == index
        assert message.header_count == len(message.records) + len(message.template_ids)


def test_flush_interval_bounds_latency() -> None:
    session = ExportSession(SessionConfig(flush_interval_ms=200), [HTTP_RECORDS], NOW_MS)
    session.poll(NOW_MS)  # the initial templates wait for the flush too
    assert session.next_deadline() == NOW_MS + 200
    assert session.poll(NOW_MS + 199) == []
    assert len(session.poll(NOW_MS + 200)) == 1
    session.add(sample_record(), NOW_MS + 300)
    assert session.next_deadline() == NOW_MS + 500


def test_statistics_records_report_totals_and_drops() -> None:
    session = ExportSession(SessionConfig(statistics_interval_ms=1_000, flush_interval_ms=1),
                            [HTTP_RECORDS],
                            NOW_MS)
    for index in range(5):
        session.add(sample_record(index), NOW_MS)
    sent = session.flush(NOW_MS)
    failed = sent[-1]
    session.count_not_sent(3, NOW_MS + 5)
    session.count_send_failure(failed, NOW_MS + 6)
    sent += session.poll(NOW_MS + 1_000)
    sent += session.poll(NOW_MS + 1_002)
    records = [r for m in decode_all(sent) for r in m.records]
    metering = [r.fields for r in records if r.template_id == METERING_STATISTICS_TEMPLATE_ID]
    exporting = [r.fields for r in records if r.template_id == EXPORTING_STATISTICS_TEMPLATE_ID]
    assert metering and exporting
    assert failed.flow_records > 0
    assert metering[0]["exportedMessageTotalCount"] == len(sent) - 2  # the failed one and itself
    assert metering[0]["exportedFlowRecordTotalCount"] == 5 - failed.flow_records
    assert exporting[0]["notSentFlowTotalCount"] == 3 + failed.flow_records
    assert exporting[0]["notSentPacketTotalCount"] == 1
    assert exporting[0]["notSentOctetTotalCount"] == len(failed.payload)
    # RFC 7011 §4.3: the times of the first and the last loss, observationTimeMilliseconds twice
    assert exporting[0]["observationTimeMilliseconds"] == NOW_MS + 5
    assert exporting[0]["observationTimeMilliseconds#2"] == NOW_MS + 6


def test_oversize_record_is_truncated_to_fit_and_counted() -> None:
    huge = "x" * 60_000
    limits = {"httpRequestTarget": 65_535, "httpUserAgent": 65_535}
    session, datagrams = run_session([sample_record(target=huge, user_agent=huge)],
                                     max_lengths=limits)
    assert all(len(d.payload) <= 1400 for d in datagrams)
    fields = flow_records(decode_all(datagrams))[0]
    assert huge.startswith(str(fields["httpRequestTarget"]))
    assert huge.startswith(str(fields["httpUserAgent"]))
    assert session.truncations.count == 2
    assert fields["httpRequestHost"] == "shop.example"  # short strings left alone


def test_mixed_address_families_pick_their_templates() -> None:
    cases = [("192.0.2.1", "198.51.100.1", 256), ("2001:db8::1", "2001:db8::2", 257),
             ("192.0.2.1", "2001:db8::2", 258), ("2001:db8::1", "198.51.100.1", 259),
             ("2001:db8::1", "", 257), ("192.0.2.1", "", 256)]
    records = [sample_record(client_address=c, proxy_address=c, upstream_address=u)
               for c, u, _ in cases]
    _, datagrams = run_session(records)
    decoded = [r for m in decode_all(datagrams) for r in m.records if not r.is_options]
    assert [r.template_id for r in decoded] == [t for _, _, t in cases]
    assert decoded[2].fields["postNATDestinationIPv6Address"] == "2001:db8::2"
    assert decoded[4].fields["postNATDestinationIPv6Address"] == "::"


def test_netflow9_can_leave_out_private_field_types() -> None:
    _, datagrams = run_session([sample_record(start_ms=NOW_MS - 2000)], ExportFormat.NETFLOW9,
                               netflow9_enterprise_fields=False)
    fields = flow_records(decode_all(datagrams))[0]
    assert "httpRequestQuery" not in fields and "uploadedBytes" not in fields
    assert fields["httpRequestHost"] == "shop.example"
    assert fields["flowStartSysUpTime"] == 0  # began before the exporter: clamped, not wrapped


def test_netflow9_private_base_is_configurable() -> None:
    _, datagrams = run_session([sample_record()], ExportFormat.NETFLOW9,
                               netflow9_private_base=40000)
    decoder = Decoder(netflow9_private_base=40000)
    assert flow_records(decode_all(datagrams, decoder))[0]["httpRequestQuery"] == "page=2&sort=asc"


@pytest.mark.parametrize("bad", [
    {"flush_interval_ms": 0}, {"template_refresh_messages": 0}, {"observation_domain_id": -1},
])
def test_bad_config_is_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        SessionConfig(**bad)  # type: ignore[arg-type]


def test_message_too_small_for_templates_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        ExportSession(SessionConfig(max_message_size=150), [HTTP_RECORDS], NOW_MS)


def test_clock_jumps_and_stalls_keep_sequence_numbers_right() -> None:
    """Wall-clock steps back and forth, and long stalls, change timers, never the counting."""
    session = ExportSession(SessionConfig(flush_interval_ms=10), [HTTP_RECORDS], NOW_MS)
    datagrams = []
    times = [NOW_MS, NOW_MS + 5, NOW_MS - 3_600_000, NOW_MS - 3_599_990, NOW_MS + 86_400_000,
             NOW_MS + 86_400_001, 0, 5, NOW_MS]
    for index, now in enumerate(times):
        for offset in range(7):
            session.add(sample_record(index * 10 + offset), now)
        datagrams += session.poll(now)
        datagrams += session.poll(now + 1_000_000)  # a stalled loop wakes up late
    datagrams += session.flush(NOW_MS)
    messages = decode_all(datagrams)
    expected = 0
    for message in messages:
        assert message.sequence_number == expected
        expected += message.data_record_count
    assert len(flow_records(messages)) == 7 * len(times)


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_sampling_is_announced_with_the_templates(fmt: ExportFormat) -> None:
    _, datagrams = run_session([sample_record()], fmt, sampling_interval=10)
    records = [r.fields for m in decode_all(datagrams) for r in m.records if r.is_options]
    if fmt is ExportFormat.IPFIX:
        (sampling,) = [r for r in records if "samplingPacketSpace" in r]
        assert sampling["selectorAlgorithm"] == 1  # systematic count-based (RFC 5477)
        assert (sampling["samplingPacketInterval"], sampling["samplingPacketSpace"]) == (1, 9)
    else:
        (sampling,) = [r for r in records if "samplingAlgorithm" in r]
    assert sampling["samplingInterval"] == 10
    _, plain = run_session([sample_record()], fmt)
    assert not [r for m in decode_all(plain) for r in m.records
                if "samplingInterval" in r.fields]


@given(start=st.integers(1_000_000_000_000, 2_000_000_000_000),
       offsets=st.lists(st.tuples(st.integers(0, 5_000_000), st.integers(0, 600_000),
                                  st.integers(0, 3_000_000)), min_size=1, max_size=8))
@settings(max_examples=200, deadline=None)
def test_netflow9_times_come_out_exact_the_way_collectors_rebuild_them(
        start: int, offsets: list[tuple[int, int, int]]) -> None:
    """ipfixcol2, nfdump and goflow2 compute unix_secs * 1000 - sysUpTime + FIRST_SWITCHED
    (likewise LAST_SWITCHED): that must be the record's own millisecond, whatever the
    sub-second parts of the session's start and of the export time."""
    session = ExportSession(SessionConfig(format=ExportFormat.NETFLOW9), [HTTP_RECORDS], start)
    decoder = Decoder()
    expected = []
    for index, (began, lasted, exported) in enumerate(offsets):
        record = sample_record(index, start_ms=start + began, end_ms=start + began + lasted)
        now = start + began + lasted + exported
        session.add(record, now)
        expected.append((record.start_ms, record.end_ms))
        for datagram in session.poll(now) + session.flush(now):
            message = decoder.decode(datagram.payload)
            base = message.export_time * 1000 - message.sys_uptime_ms
            assert 0 <= now <= message.export_time * 1000 < now + 1000  # rounded up
            for fields in (r.fields for r in message.records if not r.is_options):
                # no flow ends after the header's uptime (pmacct subtracts unsigned)
                assert (int(fields["flowStartSysUpTime"]) <= int(fields["flowEndSysUpTime"])
                        <= message.sys_uptime_ms)
                rebuilt = (base + int(fields["flowStartSysUpTime"]),
                           base + int(fields["flowEndSysUpTime"]))
                assert rebuilt == (fields["flowStartMilliseconds"],
                                   fields["flowEndMilliseconds"])
                assert rebuilt == expected[int(fields["flowId"]) - 1000]
