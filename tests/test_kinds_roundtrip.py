"""Connection and DNS records on the wire: what a session encodes, our decoder gives back,
in IPFIX and in NetFlow v9, for every combination of address families.

The expectations are written from the documented contract, not from the encoder:
templates 264-267 (connection) and 268-271 (DNS) by address families as layout.py lists
them; unsigned64 counters that never wrap; IPFIX strings cut to their byte limit on a
UTF-8 character boundary; v9 strings at fixed widths keeping one NUL byte.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from ipaddress import ip_address
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipfix.connection_record import CONNECTION_RECORDS, ConnectionRecord, FlowKind
from ipfix.datatypes import DataType
from ipfix.decoder import DecodedRecord, Decoder
from ipfix.dns_record import DNS_RECORDS, DnsRecord
from ipfix.ie import DEFAULT_REGISTRY as REG
from ipfix.layout import RecordLayout
from ipfix.session import ExportFormat, ExportSession, SessionConfig

pytestmark = pytest.mark.usefixtures("encoder_impl")

NOW_MS = 1_795_000_000_123
V9_BOOT_MS = 1_795_000_000_000  # session.py: sysUpTime counts from the whole second
Record = ConnectionRecord | DnsRecord
LAYOUTS: dict[type, RecordLayout] = {ConnectionRecord: CONNECTION_RECORDS,
                                     DnsRecord: DNS_RECORDS}
# the documented template ids: first id + 0 v4/v4, +1 v6/v6, +2 v4 client/v6 upstream,
# +3 v6 client/v4 upstream
FIRST_TEMPLATE = {ConnectionRecord: 264, DnsRecord: 268}
FAMILY_OFFSET = {(False, False): 0, (True, True): 1, (False, True): 2, (True, False): 3}
UNSIGNED_MAX = {DataType.UNSIGNED8: 2**8 - 1, DataType.UNSIGNED16: 2**16 - 1,
                DataType.UNSIGNED32: 2**32 - 1, DataType.UNSIGNED64: 2**64 - 1,
                DataType.DATE_TIME_MILLISECONDS: 2**64 - 1}


def string_names(layout: RecordLayout) -> list[str]:
    return [n for _, n in layout.fields if isinstance(n, str)
            and REG[n].data_type is DataType.STRING]


def address_names(layout: RecordLayout) -> set[str]:
    return {n for _, names in layout.fields if isinstance(names, tuple) for n in names}


# -- encoding and decoding -------------------------------------------------------------


def export(records: Sequence[Record], fmt: ExportFormat, **config: Any
           ) -> tuple[ExportSession, list[DecodedRecord]]:
    """The data records a collector decodes from a session given `records`."""
    session = ExportSession(SessionConfig(format=fmt, max_message_size=65535, **config),
                            [CONNECTION_RECORDS, DNS_RECORDS], NOW_MS)
    datagrams = []
    for record in records:
        session.add(record, NOW_MS)
        datagrams += session.poll(NOW_MS)
    datagrams += session.flush(NOW_MS + 1)
    decoder = Decoder(strict_text=True)
    decoded = [r for d in datagrams for r in decoder.decode(d.payload, "test").records
               if not r.is_options]
    return session, decoded


def utf8_cut(text: str, limit: int) -> str:
    """The longest prefix of `text` of at most `limit` bytes of UTF-8, whole characters."""
    return text.encode()[:limit].decode("utf-8", "ignore")


def families(record: Record) -> tuple[bool, bool]:
    client_v6 = ":" in record.client_address
    upstream = record.upstream_address
    return client_v6, (":" in upstream) if upstream else client_v6


def expected(record: Record, fmt: ExportFormat) -> tuple[int, dict[str, object]]:
    """(template id, fields) a decoder should report for `record`."""
    layout = LAYOUTS[type(record)]
    client_v6, upstream_v6 = families(record)
    template_id = FIRST_TEMPLATE[type(record)] + FAMILY_OFFSET[client_v6, upstream_v6]
    v9 = fmt is ExportFormat.NETFLOW9
    out: dict[str, object] = {}
    if v9:
        out["flowStartSysUpTime"] = max(record.start_ms - V9_BOOT_MS, 0) % 2**32
        out["flowEndSysUpTime"] = max(record.end_ms - V9_BOOT_MS, 0) % 2**32
    for attribute, names in layout.fields:
        value = getattr(record, attribute)
        if isinstance(names, tuple):
            v6 = upstream_v6 if attribute == "upstream_address" else client_v6
            out[names[v6]] = ip_address(value or ("::" if v6 else "0.0.0.0"))
        elif REG[names].data_type is DataType.STRING:
            if v9:  # fixed width, one NUL kept; NUL padding does not come back
                text = utf8_cut(value, layout.netflow9_widths[names] - 1).rstrip("\x00")
            else:
                text = utf8_cut(value, layout.max_lengths[names])
            out[names] = text
        else:
            out[names] = int(value)
    return template_id, out


def decoded_by_id(records: list[DecodedRecord], layout_names: set[str]
                  ) -> dict[int, tuple[int, dict[str, object]]]:
    out = {}
    for record in records:
        fields: dict[str, object] = {k: ip_address(str(v)) if k in layout_names else v
                                     for k, v in record.fields.items()}
        flow_id = fields["flowId"]
        assert isinstance(flow_id, int)
        out[flow_id] = (record.template_id, fields)
    return out


ALL_ADDRESS_NAMES = address_names(CONNECTION_RECORDS) | address_names(DNS_RECORDS)


def check_round_trip(batch: Sequence[Record], fmt: ExportFormat) -> None:
    batch = [msgspec.structs.replace(r, flow_id=i) for i, r in enumerate(batch)]
    _, decoded = export(batch, fmt)
    got = decoded_by_id(decoded, ALL_ADDRESS_NAMES)
    assert len(decoded) == len(batch)
    for index, record in enumerate(batch):
        assert got[index] == expected(record, fmt), type(record).__name__


# -- strategies --------------------------------------------------------------------------

U64 = st.integers(0, 2**64 - 1) | st.sampled_from(
    [2**32 - 1, 2**32, 2**32 + 1, 2**53 + 1, 2**63, 2**64 - 2, 2**64 - 1])
MULTIBYTE = ["\u00e9", "\u20ac", "\U0001f600"]  # 2, 3 and 4 bytes of UTF-8


def near(limit: int) -> st.SearchStrategy[str]:
    """Text whose multi-byte characters straddle `limit` bytes."""
    return st.builds(lambda pad, char, count: "a" * pad + char * count,
                     st.integers(max(limit - 4, 0), limit), st.sampled_from(MULTIBYTE),
                     st.integers(1, 3))


def text_for(layout: RecordLayout, name: str) -> st.SearchStrategy[str]:
    """Short arbitrary text (NUL and other controls included), long repeated text, and
    text around either format's limit (generating long arbitrary text is slow)."""
    return (st.text(max_size=12)
            | st.builds(str.__mul__, st.sampled_from(["a", "\u00e9", "x\u20ac", "\U0001f600"]),
                        st.integers(0, 1100))
            | near(layout.max_lengths[name]) | near(layout.netflow9_widths[name] - 1))


IP = {4: st.ip_addresses(v=4).map(str), 6: st.ip_addresses(v=6).map(str), 0: st.just("")}


def field_strategies(layout: RecordLayout) -> dict[str, st.SearchStrategy[Any]]:
    """Per attribute, built once (strategies made inside a draw are validated each time)."""
    out: dict[str, st.SearchStrategy[Any]] = {}
    for attribute, names in layout.fields:
        if isinstance(names, tuple):
            continue
        if REG[names].data_type is DataType.STRING:
            out[attribute] = text_for(layout, names)
        else:
            top = UNSIGNED_MAX[REG[names].data_type]
            out[attribute] = U64 if top == 2**64 - 1 else st.integers(0, top)
    return out


FIELD_STRATEGIES = {t: field_strategies(layout) for t, layout in LAYOUTS.items()}


@st.composite
def records(draw: st.DrawFn, record_type: type[Record]) -> Record:
    client = draw(st.sampled_from([4, 6]))
    upstream = draw(st.sampled_from([4, 6, 0]))  # 0: no upstream connection
    values = {a: draw(s) for a, s in FIELD_STRATEGIES[record_type].items()}
    values.update(client_address=draw(IP[client]), proxy_address=draw(IP[client]),
                  upstream_address=draw(IP[upstream]))
    return record_type(**values)


either_record = records(ConnectionRecord) | records(DnsRecord)


# -- properties ---------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(either_record, min_size=1, max_size=4))
def test_ipfix_round_trip(batch: list[Record]) -> None:
    check_round_trip(batch, ExportFormat.IPFIX)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(either_record, min_size=1, max_size=4))
def test_netflow9_round_trip(batch: list[Record]) -> None:
    check_round_trip(batch, ExportFormat.NETFLOW9)


# -- the same facts, by example -----------------------------------------------------------

FAMILY_CASES = [  # client, upstream, template offset
    ("192.0.2.10", "198.51.100.7", 0),
    ("2001:db8::10", "2001:db8:1::7", 1),
    ("192.0.2.10", "2001:db8:1::7", 2),
    ("2001:db8::10", "198.51.100.7", 3),
    ("192.0.2.10", "", 0),  # no upstream: the client's family, a zero address
    ("2001:db8::10", "", 1),
]


def connection(**overrides: Any) -> ConnectionRecord:
    values: dict[str, Any] = dict(
        flow_id=7, start_ms=NOW_MS - 5000, end_ms=NOW_MS, client_address="192.0.2.10",
        proxy_address="192.0.2.1", upstream_address="198.51.100.7", client_port=40000,
        proxy_port=8443, upstream_port=443, protocol=6, octets=300, initiator_octets=100,
        responder_octets=200, initiator_messages=3, responder_messages=4,
        flow_end_reason=3, termination_state=0, kind=FlowKind.TCP_STREAM,
        tls_server_name="shop.example", tls_version="TLSv1.3", tls_alpn="h2",
        tls_offered_alpn="h2,http/1.1", tls_offered_version="TLSv1.3", error="")
    values.update(overrides)
    return ConnectionRecord(**values)


def dns_query(**overrides: Any) -> DnsRecord:
    values: dict[str, Any] = dict(
        flow_id=8, start_ms=NOW_MS - 20, end_ms=NOW_MS, client_address="192.0.2.10",
        proxy_address="192.0.2.1", upstream_address="198.51.100.53", client_port=5353,
        proxy_port=53, upstream_port=53, protocol=17, octets=108, initiator_octets=28,
        responder_octets=80, flow_end_reason=3, termination_state=0, transaction_id=42,
        query_name="dns.google", query_type=1, query_class=1, response_code=0,
        flags=0x8180, answer_count=2, answers="dns.google A 8.8.8.8; dns.google A 8.8.4.4",
        minimum_ttl=32, error="")
    values.update(overrides)
    return DnsRecord(**values)


MAKERS: list[Callable[..., Record]] = [connection, dns_query]


@pytest.mark.parametrize("fmt", list(ExportFormat))
@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize(("client", "upstream", "offset"), FAMILY_CASES)
def test_each_family_combination_has_its_template(
        fmt: ExportFormat, make: Callable[..., Record], client: str, upstream: str,
        offset: int) -> None:
    proxy = "2001:db8::1" if ":" in client else "192.0.2.1"
    record = make(client_address=client, proxy_address=proxy, upstream_address=upstream)
    _, decoded = export([record], fmt)
    assert len(decoded) == 1
    first = 264 if isinstance(record, ConnectionRecord) else 268
    assert decoded[0].template_id == first + offset
    fields = decoded[0].fields
    v6 = ":" in client
    assert ip_address(str(fields["sourceIPv6Address" if v6 else "sourceIPv4Address"])) == (
        ip_address(client))
    upstream_v6 = ":" in upstream if upstream else v6
    name = "postNATDestinationIPv6Address" if upstream_v6 else "postNATDestinationIPv4Address"
    assert ip_address(str(fields[name])) == ip_address(upstream or ("::" if v6 else "0.0.0.0"))
    assert not {"sourceIPv4Address", "sourceIPv6Address"} <= fields.keys()


COUNTERS = {ConnectionRecord: ["octets", "initiator_octets", "responder_octets",
                               "initiator_messages", "responder_messages"],
            DnsRecord: ["octets", "initiator_octets", "responder_octets"]}
COUNTER_ELEMENTS = {"octets": "octetDeltaCount", "initiator_octets": "initiatorOctets",
                    "responder_octets": "responderOctets",
                    "initiator_messages": "initiatorMessages",
                    "responder_messages": "responderMessages"}


@pytest.mark.parametrize("fmt", list(ExportFormat))
@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("value", [2**32 - 1, 2**32, 2**32 + 5, 2**63, 2**64 - 1])
def test_counters_do_not_wrap(fmt: ExportFormat, make: Callable[..., Record],
                              value: int) -> None:
    probe = make()
    names = COUNTERS[type(probe)]
    record = make(**{name: value - i for i, name in enumerate(names)},
                  flow_id=2**64 - 1)
    _, decoded = export([record], fmt)
    fields = decoded[0].fields
    assert fields["flowId"] == 2**64 - 1
    for i, name in enumerate(names):
        assert fields[COUNTER_ELEMENTS[name]] == value - i, name


def limits_of(layout: RecordLayout, fmt: ExportFormat) -> Mapping[str, int]:
    """Bytes of text each string element carries: IPFIX limit, or v9 width less its NUL."""
    if fmt is ExportFormat.IPFIX:
        return layout.max_lengths
    return {name: width - 1 for name, width in layout.netflow9_widths.items()}


@pytest.mark.parametrize("fmt", list(ExportFormat))
@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("char", MULTIBYTE)
def test_strings_are_cut_on_a_character_boundary(fmt: ExportFormat,
                                                 make: Callable[..., Record],
                                                 char: str) -> None:
    """One byte short of the limit, then a multi-byte character: the character goes
    entirely, and each cut is counted."""
    layout = LAYOUTS[type(make())]
    limits = limits_of(layout, fmt)
    attributes = {n: a for a, n in layout.fields if isinstance(n, str)}
    names = string_names(layout)
    assert set(names) == set(limits)  # every string element has a limit in both formats
    record = make(**{attributes[n]: "x" * (limits[n] - 1) + char for n in names})
    session, decoded = export([record], fmt)
    fields = decoded[0].fields
    for name in names:
        assert fields[name] == "x" * (limits[name] - 1), name
    assert session.truncations.count == len(names)


@pytest.mark.parametrize("fmt", list(ExportFormat))
@pytest.mark.parametrize("make", MAKERS)
def test_strings_at_the_limit_are_whole_and_not_counted(fmt: ExportFormat,
                                                        make: Callable[..., Record]) -> None:
    layout = LAYOUTS[type(make())]
    limits = limits_of(layout, fmt)
    attributes = {n: a for a, n in layout.fields if isinstance(n, str)}
    # limits of 2 bytes or more: "é" fills them exactly when the count is right
    record = make(**{attributes[n]: "\u00e9" * (limits[n] // 2) + "z" * (limits[n] % 2)
                     for n in limits})
    session, decoded = export([record], fmt)
    for name in limits:
        value = decoded[0].fields[name]
        assert isinstance(value, str) and len(value.encode()) == limits[name], name
    assert session.truncations.count == 0


def test_v9_widths_follow_the_configuration() -> None:
    """A width set for the session is the one on the wire (and in what comes back)."""
    record = connection(tls_server_name="a" * 100, error="e" * 100)
    session, decoded = export([record], ExportFormat.NETFLOW9,
                              netflow9_widths={"tlsServerName": 10, "proxyErrorMessage": 200})
    fields = decoded[0].fields
    assert fields["tlsServerName"] == "a" * 9
    assert fields["proxyErrorMessage"] == "e" * 100
    assert session.truncations.count == 1


def test_ipfix_limits_follow_the_configuration() -> None:
    record = dns_query(answers="; ".join(["x.example A 192.0.2.1"] * 100))
    session, decoded = export([record], ExportFormat.IPFIX, max_lengths={"dnsAnswers": 4000})
    assert decoded[0].fields["dnsAnswers"] == record.answers
    assert session.truncations.count == 0


# -- what the addon cuts between items arrives whole -----------------------------------


def answers_limit(fmt: ExportFormat) -> int:
    """As the addon computes it for one collector: the IPFIX limit, or v9 width less NUL."""
    return limits_of(DNS_RECORDS, fmt)["dnsAnswers"]


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_answers_cut_by_the_addon_reach_the_collector_whole(fmt: ExportFormat) -> None:
    from mitmproxy import dns
    from mitmproxy.net.dns import classes, types
    from mitmproxy.test import tflow, tutils

    from mitmflows.dns import dns_record

    answers = [dns.ResourceRecord(f"host{i}.example", types.A, classes.IN, 60,
                                  bytes([192, 0, 2, i])) for i in range(60)]
    flow = tflow.tdnsflow(resp=tutils.tdnsresp(answers=answers))
    record, cut = dns_record(flow, NOW_MS, answers_limit(fmt))
    assert 0 < cut < 60
    session, decoded = export([record], fmt)
    text = decoded[0].fields["dnsAnswers"]
    assert text == record.answers and session.truncations.count == 0
    assert isinstance(text, str)
    assert text.split("; ") == [f"host{i}.example A 192.0.2.{i}" for i in range(60 - cut)]


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_alpn_offers_cut_by_the_addon_reach_the_collector_whole(fmt: ExportFormat) -> None:
    from mitmflows.hello import Limits, join_within

    limit = limits_of(CONNECTION_RECORDS, fmt)["tlsOfferedApplicationProtocols"]
    offers = [f"proto-{i}" for i in range(100)]
    text, _ = join_within(offers, ",", Limits(alpn_offers=limit).alpn_offers)
    session, decoded = export([connection(tls_offered_alpn=text)], fmt)
    got = decoded[0].fields["tlsOfferedApplicationProtocols"]
    assert got == text and session.truncations.count == 0
    assert isinstance(got, str) and got.split(",") == offers[:got.count(",") + 1]
