"""The addon's helpers for the record kinds beyond HTTP, on mitmproxy's own objects:
ClientHellos built byte by byte, DNS messages, TCP/UDP test flows, and the TLS failures
mitmproxy 12.2's own TLS layers report.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import connection, dns, tcp, udp
from mitmproxy.flow import Error
from mitmproxy.net.dns import classes, types
from mitmproxy.options import Options
from mitmproxy.proxy import context, mode_specs, server_hooks
from mitmproxy.proxy.layers import tls as tls_layers
from mitmproxy.test import tflow, tutils
from mitmproxy.tls import ClientHello, TlsData

from ipfix.connection_record import ConnectionRecord, FlowKind
from ipfix.dns_record import DnsRecord
from ipfix.http_record import HttpFlowRecord
from ipfix.termination import FlowEndReason, Termination
from mitmflows import dns as mdns
from mitmflows.connect_failures import connect_failure
from mitmflows.hello import HelloFacts, Limits, hello_facts, highest_version, join_within
from mitmflows.streams import OpenStreams, StreamCounts, stream_record, stream_termination
from mitmflows.tls import (
    Passthrough,
    passthrough_record,
    read_hello,
    tls_failure_code,
    tls_failure_record,
)

T = Termination
CONTROL = {chr(c) for c in range(32) if c != 9} | {"\x7f"}  # what records never carry


def flow_id(uuid: str) -> int:
    """A flow's id as records carry it: the UUID's first 64 bits."""
    return int(uuid.replace("-", "")[:16], 16)


def epoch_ms(seconds: float) -> int:
    return round(seconds * 1000)


# -- ClientHellos, byte by byte (RFC 8446 4.1.2, RFC 6066 3, RFC 7301 3.1) ---------------

GREASE = [0x0A0A + 0x1010 * i for i in range(16)]  # RFC 8701


def u16(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def extension(kind: int, body: bytes) -> bytes:
    return struct.pack("!H", kind) + u16(body)


def sni_extension(name: bytes) -> bytes:
    return extension(0, u16(b"\x00" + u16(name)))  # one host_name entry


def alpn_extension(protocols: list[bytes]) -> bytes:
    return extension(16, u16(b"".join(bytes([len(p)]) + p for p in protocols)))


def versions_extension(versions: list[int]) -> bytes:
    listed = b"".join(struct.pack("!H", v) for v in versions)
    return extension(43, bytes([len(listed)]) + listed)


def hello_body(extensions: list[bytes], legacy_version: int = 0x0303) -> bytes:
    """A ClientHello message body: version, random, session id, one cipher suite, null
    compression, extensions."""
    return (struct.pack("!H", legacy_version) + bytes(range(32)) + b"\x00"
            + u16(b"\x13\x01") + b"\x01\x00" + u16(b"".join(extensions)))


def tls_record(body: bytes) -> bytes:
    """The body as a handshake message in one TLS record, as a client sends it."""
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    assert len(handshake) <= 2**14
    return b"\x16\x03\x01" + u16(handshake)


def client_hello(*, sni: bytes | None = None, alpn: list[bytes] | None = None,
                 versions: list[int] | None = None, legacy_version: int = 0x0303
                 ) -> ClientHello:
    extensions = []
    if sni is not None:
        extensions.append(sni_extension(sni))
    if alpn is not None:
        extensions.append(alpn_extension(alpn))
    if versions is not None:
        extensions.append(versions_extension(versions))
    return ClientHello(hello_body(extensions, legacy_version))


def test_a_browser_like_hello() -> None:
    hello = client_hello(sni=b"shop.example", alpn=[b"h2", b"http/1.1"],
                         versions=[0x3A3A, 0x0304, 0x0303], legacy_version=0x0303)
    assert hello_facts(hello, Limits()) == HelloFacts(
        server_name="shop.example", alpn_offers="h2,http/1.1", version="TLSv1.3", cuts=0)


def test_a_hello_read_from_what_a_client_sent() -> None:
    wire = tls_record(hello_body([sni_extension(b"api.example"),
                                  alpn_extension([b"h2"]), versions_extension([0x0304])]))
    hello = read_hello(wire, "tcp")
    assert hello is not None
    assert hello_facts(hello, Limits()) == HelloFacts("api.example", "h2", "TLSv1.3", 0)
    assert read_hello(wire[:40], "tcp") is None  # not all of it yet
    assert read_hello(b"GET / HTTP/1.1\r\n\r\n", "tcp") is None
    assert read_hello(b"\x16\x03\x01\x00\x05hello", "tcp") is None  # a record, no hello
    assert read_hello(b"", "udp") is None
    assert read_hello(b"\x00" * 40, "udp") is None  # neither DTLS nor QUIC


@pytest.mark.parametrize("grease", GREASE)
def test_grease_versions_are_never_the_highest(grease: int) -> None:
    hello = client_hello(versions=[grease, 0x0303, 0x0302], legacy_version=0x0303)
    assert hello_facts(hello, Limits()).version == "TLSv1.2"


@pytest.mark.parametrize(("legacy", "name"), [
    (0x0303, "TLSv1.2"), (0x0302, "TLSv1.1"), (0x0301, "TLSv1"), (0x0300, "SSLv3")])
def test_without_supported_versions_the_legacy_version_is_the_offer(legacy: int,
                                                                   name: str) -> None:
    assert hello_facts(client_hello(sni=b"a.example", legacy_version=legacy),
                       Limits()).version == name


def test_supported_versions_outrank_the_legacy_version() -> None:
    """TLS 1.3 clients say 1.2 in legacy_version (RFC 8446 4.1.2)."""
    hello = client_hello(versions=[0x0304], legacy_version=0x0303)
    assert hello_facts(hello, Limits()).version == "TLSv1.3"


@pytest.mark.parametrize(("versions", "name"), [
    ([0x0301, 0x0304, 0x0302], "TLSv1.3"),  # order does not matter
    ([0x0A0A, 0x0303], "TLSv1.2"),
    ([0xFEFF, 0xFEFD], "DTLSv1.2"),  # DTLS numbers count down
    ([0xFEFD, 0xFEFC, 0xFEFF], "DTLSv1.3"),
    ([0x0305], "0x0305"),  # a version without a name, as hex
    ([0x7F1C, 0x0303], "0x7f1c"),  # a draft version above every named one
    ([], ""),
    ([0], ""),
    ([0xFAFA], ""),
])
def test_highest_version(versions: list[int], name: str) -> None:
    assert highest_version(versions) == name


def test_a_10000_byte_sni_is_bounded_and_counted() -> None:
    wire = tls_record(hello_body([sni_extension(b"s" * 10_000)]))
    hello = read_hello(wire, "tcp")
    assert hello is not None
    facts = hello_facts(hello, Limits())
    assert facts.server_name == "s" * 255  # mitmproxy refuses it; the record has its start
    assert facts.cuts == 1  # one field cut
    small = hello_facts(hello, Limits(server_name=63))
    assert small.server_name == "s" * 63 and small.cuts == 1


def test_a_non_ascii_sni_is_cut_on_a_character() -> None:
    facts = hello_facts(client_hello(sni="\u00e9".encode() * 200), Limits(server_name=255))
    assert facts.server_name == "\u00e9" * 127  # 254 bytes: the 128th would need 256
    assert facts.cuts == 1


def test_an_sni_with_control_characters_is_made_safe() -> None:
    facts = hello_facts(client_hello(sni=b"evil\r\nInjected: 1\x00.example\xff"), Limits())
    assert not CONTROL & set(facts.server_name)
    assert facts.server_name.startswith("evil") and facts.server_name.endswith(".example\ufffd")
    assert facts.cuts == 0


def test_200_alpn_offers_are_cut_between_offers() -> None:
    offers = [b"p%03d" % i for i in range(200)]
    facts = hello_facts(client_hello(alpn=offers), Limits(alpn_offers=256))
    # "p000" then ",pNNN" per offer: 4 + 5 * 50 = 254 bytes hold 51 offers, 52 need 259
    assert facts.alpn_offers == ",".join(o.decode() for o in offers[:51])
    assert facts.cuts == 1  # one field cut


def test_a_hostile_hello_counts_each_field_cut_once() -> None:
    hello = client_hello(sni=b"s" * 10_000, alpn=[b"p%03d" % i for i in range(200)])
    facts = hello_facts(hello, Limits())
    assert len(facts.server_name) == 255 and len(facts.alpn_offers) == 254
    assert facts.cuts == 2
    assert hello_facts(client_hello(sni=b"s" * 255, alpn=[b"h2"] * 85), Limits()).cuts == 0


def test_an_alpn_offer_longer_than_the_limit_leaves_none_and_is_counted() -> None:
    """join_within's contract: whole items or none, never half of one."""
    facts = hello_facts(client_hello(alpn=[b"a" * 30, b"h2"]), Limits(alpn_offers=10))
    assert facts.alpn_offers == ""
    assert facts.cuts == 1


def test_alpn_offers_with_control_bytes_are_made_safe() -> None:
    facts = hello_facts(client_hello(alpn=[b"h2\r\nX", b"\xff\xfe"]), Limits())
    assert not CONTROL & set(facts.alpn_offers)
    assert facts.alpn_offers.count(",") == 1


@pytest.mark.parametrize(("items", "limit", "result"), [
    (["ab", "cd"], 5, ("ab,cd", 0)),
    (["ab", "cd"], 4, ("ab", 1)),
    (["ab", "cd", "ef"], 2, ("ab", 2)),
    (["\u00e9\u00e9", "x"], 4, ("\u00e9\u00e9", 1)),  # bytes of UTF-8, not characters
    (["\u00e9\u00e9\u00e9", "x"], 5, ("", 2)),  # the first too long: none, never half
    ([], 10, ("", 0)),
])
def test_join_within(items: list[str], limit: int, result: tuple[str, int]) -> None:
    assert join_within(items, ",", limit) == result


HOST_BYTES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                     max_size=300).map(str.encode)
PRINTABLE_ITEMS = st.text(st.characters(codec="utf-8", categories=["L", "N"]) | st.just("-"),
                          min_size=1, max_size=24)  # at most 96 bytes: an ALPN item holds 255


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sni=HOST_BYTES | PRINTABLE_ITEMS.map(str.encode),
       offers=st.lists(PRINTABLE_ITEMS, max_size=40), sni_limit=st.integers(1, 300),
       alpn_limit=st.integers(1, 300))
def test_hello_facts_stay_within_their_limits(sni: bytes, offers: list[str], sni_limit: int,
                                              alpn_limit: int) -> None:
    facts = hello_facts(client_hello(sni=sni, alpn=[o.encode() for o in offers]),
                        Limits(server_name=sni_limit, alpn_offers=alpn_limit))
    full_name = sni.decode()
    assert len(facts.server_name.encode()) <= sni_limit
    assert full_name.startswith(facts.server_name)
    sni_cut = len(sni) > sni_limit
    if sni_cut:  # as much as fits, on a character boundary
        assert len(full_name[:len(facts.server_name) + 1].encode()) > sni_limit
    else:
        assert facts.server_name == full_name
    assert len(facts.alpn_offers.encode()) <= alpn_limit
    if not offers:
        alpn_cut = False
        assert facts.alpn_offers == ""
    elif len(offers[0].encode()) > alpn_limit:  # not even the first fits: none
        alpn_cut = True
        assert facts.alpn_offers == ""
    else:  # whole offers, as many as fit
        kept = len(facts.alpn_offers.split(","))
        assert facts.alpn_offers == ",".join(offers[:kept])
        alpn_cut = kept < len(offers)
        if alpn_cut:
            assert len(",".join(offers[:kept + 1]).encode()) > alpn_limit
    assert facts.cuts == sni_cut + alpn_cut  # fields cut


# -- DNS -------------------------------------------------------------------------------------

def dns_name(name: str) -> bytes:
    """A domain name in wire form, uncompressed."""
    return b"".join(bytes([len(label)]) + label.encode()
                    for label in name.split(".")) + b"\x00"


def header(flags: int, message_id: int = 7) -> bytes:
    return struct.pack("!HHHHHH", message_id, flags, 0, 0, 0, 0)


@pytest.mark.parametrize("flags", [
    0x0100,  # a standard query, recursion desired
    0x0000,  # an iterative query
    0x0110,  # a query with CD (checking disabled, RFC 4035)
    0x8180,  # a response: RD, RA, NOERROR
    0x8183,  # NXDOMAIN
    0x8182,  # SERVFAIL
    0x8580,  # authoritative answer
    0x8380,  # truncated
    0x81A0,  # AD: authentic data
    0x2800,  # opcode 5, UPDATE (RFC 2136)
    0xFFFF,
])
def test_flags_word_of_known_headers(flags: int) -> None:
    assert mdns.flags_word(dns.DNSMessage.unpack(header(flags))) == flags


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF))
def test_flags_word_is_the_header_word(flags: int) -> None:
    assert mdns.flags_word(dns.DNSMessage.unpack(header(flags))) == flags


def rr(name: str, kind: int, data: bytes, ttl: int = 300) -> dns.ResourceRecord:
    return dns.ResourceRecord(name, kind, classes.IN, ttl, data)


@pytest.mark.parametrize(("record", "text"), [
    (rr("example.com", types.A, bytes([192, 0, 2, 1])), "example.com A 192.0.2.1"),
    (rr("example.com", types.AAAA, IPv6Address("2001:db8::1").packed),
     "example.com AAAA 2001:db8::1"),
    (rr("www.example.com", types.CNAME, dns_name("alias.example.net")),
     "www.example.com CNAME alias.example.net"),
    (rr("example.com", types.NS, dns_name("ns1.example.com")), "example.com NS ns1.example.com"),
    (rr("1.2.0.192.in-addr.arpa", types.PTR, dns_name("host.example")),
     "1.2.0.192.in-addr.arpa PTR host.example"),
    (rr("example.com", types.MX, b"\x00\x0a" + dns_name("mx.example")),  # no reading of MX
     "example.com MX 0x000a026d78076578616d706c6500"),
    (rr("example.com", types.TXT, b"\x05hello\x0bv=spf1 -all"),
     "example.com TXT hello v=spf1 -all"),
    # RFC 1035 5.1 escapes for what would confuse a reader: quote, backslash, ';'
    (rr("example.com", types.TXT, b'\x0esay "hi"; \\ ok'),
     "example.com TXT say \\034hi\\034\\059 \\092 ok"),
    (rr("example.com", types.TXT, b""), "example.com TXT "),
    (rr("example.com", 65280, b"\xde\xad\xbe\xef"), "example.com TYPE(65280) 0xdeadbeef"),
    (rr("example.com", types.A, b"\x01\x02\x03"), "example.com A 0x010203"),  # malformed
    (rr("example.com", types.AAAA, b"\x01"), "example.com AAAA 0x01"),
])
def test_answer_text(record: dns.ResourceRecord, text: str) -> None:
    assert mdns.answer_text(record) == text


def test_answer_text_is_safe_for_collectors() -> None:
    text = mdns.answer_text(rr("evil\r\n.example", types.TXT, b"\x04a\nb\x00"))
    assert not CONTROL & set(text)
    assert text == "evil\ufffd\ufffd.example TXT a\ufffdb\ufffd"


@pytest.mark.parametrize(("data", "parts"), [
    (b"", []),
    (b"\x00", [b""]),
    (b"\x03abc\x01d", [b"abc", b"d"]),
    (b"\x05ab", [b"ab"]),  # a length beyond the data: what there is
])
def test_character_strings(data: bytes, parts: list[bytes]) -> None:
    assert mdns.character_strings(data) == parts


QUERY_SIZE = 12 + len(dns_name("dns.google")) + 4  # header, question: 28 bytes
ANSWER_SIZE = len(dns_name("dns.google")) + 10 + 4  # name, type class ttl length, IPv4


def dns_flow(*, resp: bool | dns.DNSMessage = True, err: Error | None = None,
             client: tuple[str, int] = ("192.0.2.10", 5353),
             proxy: tuple[str, int] = ("192.0.2.1", 53),
             upstream: tuple[str, int] | None = ("198.51.100.53", 53),
             transport: str = "udp") -> dns.DNSFlow:
    flow = tflow.tdnsflow(resp=resp, err=err or False)
    flow.client_conn.peername, flow.client_conn.sockname = client, proxy
    flow.client_conn.transport_protocol = transport  # type: ignore[assignment]
    flow.server_conn.peername = upstream
    return flow


def test_an_answered_query() -> None:
    flow = dns_flow()
    record, cut = mdns.dns_record(flow, 0, 1024)
    assert cut == 0
    assert record == DnsRecord(
        flow_id=flow_id(flow.id), start_ms=946681200000, end_ms=946681201000,
        client_address="192.0.2.10", proxy_address="192.0.2.1",
        upstream_address="198.51.100.53", client_port=5353, proxy_port=53, upstream_port=53,
        protocol=17, octets=QUERY_SIZE * 2 + 2 * ANSWER_SIZE, initiator_octets=QUERY_SIZE,
        responder_octets=QUERY_SIZE + 2 * ANSWER_SIZE, flow_end_reason=3,
        termination_state=0, transaction_id=42, query_name="dns.google",
        query_type=types.A, query_class=classes.IN, response_code=0, flags=0x8180,
        answer_count=2, answers="dns.google A 8.8.8.8; dns.google A 8.8.4.4",
        minimum_ttl=32, error="")


def test_a_query_over_tcp_counts_the_length_prefixes() -> None:
    record, _ = mdns.dns_record(dns_flow(transport="tcp"), 0, 1024)
    assert record.protocol == 6
    assert record.initiator_octets == QUERY_SIZE + 2
    assert record.responder_octets == QUERY_SIZE + 2 * ANSWER_SIZE + 2
    assert record.octets == record.initiator_octets + record.responder_octets


def test_ipv6_and_ipv4_mapped_clients() -> None:
    record, _ = mdns.dns_record(dns_flow(client=("::ffff:192.0.2.77", 1000),
                                         proxy=("::ffff:192.0.2.1", 53)), 0, 1024)
    assert (record.client_address, record.proxy_address) == ("192.0.2.77", "192.0.2.1")
    record, _ = mdns.dns_record(dns_flow(client=("2001:db8::7%eth0", 1000),
                                         proxy=("2001:db8::1", 53), upstream=None), 0, 1024)
    assert (record.client_address, record.upstream_address) == ("2001:db8::7", "")
    assert record.upstream_port == 0


@pytest.mark.parametrize(("rcode", "name"), [(0, "NOERROR"), (2, "SERVFAIL"), (3, "NXDOMAIN"),
                                             (5, "REFUSED")])
def test_response_codes(rcode: int, name: str) -> None:
    response = tutils.tdnsresp(response_code=rcode, answers=[])
    record, cut = mdns.dns_record(dns_flow(resp=response), 0, 1024)
    assert record.response_code == rcode
    assert record.flags == 0x8180 | rcode
    assert (record.answer_count, record.answers, record.minimum_ttl, cut) == (0, "", 0, 0)
    # an answer, whatever it says, completes the transaction
    assert (record.termination_state, record.flow_end_reason) == (0, 3), name


def a_records(count: int, ttls: list[int] | None = None) -> list[dns.ResourceRecord]:
    ttls = ttls or [300] * count
    return [rr(f"h{i}.example", types.A, bytes([192, 0, 2, i]), ttls[i]) for i in range(count)]


def test_answers_are_cut_between_records_and_counted() -> None:
    answers = a_records(5, ttls=[300, 200, 100, 50, 7])
    texts = [f"h{i}.example A 192.0.2.{i}" for i in range(5)]  # 22 bytes each
    response = tutils.tdnsresp(answers=answers)
    limit = len("; ".join(texts[:3])) + 5  # three fit, the fourth does not
    record, cut = mdns.dns_record(dns_flow(resp=response), 0, limit)
    assert record.answers == "; ".join(texts[:3])
    assert cut == 2
    assert record.answer_count == 5  # the answer section, not what the text holds
    assert record.minimum_ttl == 7  # of the whole section


def test_an_answer_longer_than_the_limit_is_left_out_whole() -> None:
    """dnsAnswers is cut between records: a collector never sees half a record, even when
    the first one alone is too long (a DKIM key in a v9 field of 127 bytes)."""
    dkim = b"v=DKIM1; k=rsa; p=" + b"A" * 200
    answers = [rr("sel._domainkey.example", types.TXT, bytes([len(dkim)]) + dkim),
               rr("other.example", types.TXT, b"\x02ok")]
    record, cut = mdns.dns_record(dns_flow(resp=tutils.tdnsresp(answers=answers)), 0, 127)
    assert record.answers == ""
    assert cut == 2
    assert record.answer_count == 2


LABELS = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
NAMES = st.lists(LABELS, min_size=1, max_size=4).map(".".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(NAMES, st.ip_addresses(v=4)), max_size=12), st.integers(0, 400))
def test_answers_hold_whole_records_only(answers: list[tuple[str, IPv4Address]],
                                        limit: int) -> None:
    records = [rr(name, types.A, address.packed) for name, address in answers]
    texts = [f"{name} A {address}" for name, address in answers]
    response = tutils.tdnsresp(answers=records)
    record, cut = mdns.dns_record(dns_flow(resp=response), 0, limit)
    kept = len(texts) - cut
    assert 0 <= kept <= len(texts)
    assert record.answers == "; ".join(texts[:kept])
    assert len(record.answers.encode()) <= limit
    if kept < len(texts):
        assert len("; ".join(texts[:kept + 1]).encode()) > limit
    assert record.answer_count == len(texts)


@pytest.mark.parametrize(("message", "code"), [
    (Error.KILLED_MESSAGE, T.KILLED_BY_PROXY),
    ("[Errno 111] Connect call failed ('198.51.100.53', 53)", T.UPSTREAM_CONNECT_FAILED),
    ("[Errno -2] Name or service not known", T.UPSTREAM_CONNECT_FAILED),
    # asyncio, when a name has several addresses and each fails differently
    ("Multiple exceptions: [Errno 111] Connect call failed ('::1', 53, 0, 0), "
     "[Errno 111] Connect call failed ('127.0.0.1', 53)", T.UPSTREAM_CONNECT_FAILED),
    # an addon refused the upstream connection (server_connect: data.server.error)
    ("Connection killed: blocked by policy", T.UPSTREAM_CONNECT_FAILED),
    ("No hook has set a response and there is no upstream server.", T.PROXY_ERROR),
    ("Cannot resolve, dns_name_servers unknown.", T.PROXY_ERROR),  # mitmproxy's resolver
])
def test_dns_termination_of_errors(message: str, code: Termination) -> None:
    flow = dns_flow(resp=False, err=Error(message))
    assert mdns.dns_termination(flow) == code
    record, cut = mdns.dns_record(flow, 946681205000, 1024)
    assert (record.termination_state, record.flow_end_reason) == (code, 4)
    assert record.error == message
    assert record.flags == 0x0100  # the query's: no answer came
    assert (record.response_code, record.answers, record.answer_count, cut) == (0, "", 0, 0)
    assert record.end_ms == 946681205000  # when the error was reported


def test_a_hello_offering_only_grease_versions_falls_back_to_its_legacy_version() -> None:
    facts = hello_facts(client_hello(versions=GREASE[:3], legacy_version=0x0303), Limits())
    assert facts.version == "TLSv1.2"


def test_dns_termination_of_an_answer() -> None:
    assert mdns.dns_termination(dns_flow()) == T.COMPLETED


def test_an_unanswered_query() -> None:
    flow = dns_flow(resp=False)
    record, _ = mdns.dns_record(flow, 946681230000, 1024, T.UPSTREAM_TIMEOUT)
    assert (record.termination_state, record.flow_end_reason) == (T.UPSTREAM_TIMEOUT, 4)
    assert record.error == mdns.NO_ANSWER and record.error
    assert (record.start_ms, record.end_ms) == (946681200000, 946681230000)
    assert record.responder_octets == 0 and record.octets == QUERY_SIZE
    assert record.query_name == "dns.google" and record.transaction_id == 42


def test_an_error_sentence_is_one_line() -> None:
    record, _ = mdns.dns_record(dns_flow(resp=False, err=Error("bad\r\nthing\x00")), 0, 100)
    assert not CONTROL & set(record.error)


def test_pending_queries() -> None:
    first, second = dns_flow(resp=False), dns_flow(resp=False)
    second.client_conn = first.client_conn
    pending = mdns.PendingQueries()
    pending.add(first)
    pending.add(second)
    pending.answered(first)
    waiting, had_flows = pending.client_gone(first.client_conn.id)
    assert [f.id for f in waiting] == [second.id] and had_flows
    assert pending.client_gone(first.client_conn.id) == ([], False)  # forgotten
    assert pending.by_client == {} and pending.clients_with_flows == set()


def test_pending_queries_answered_up_front() -> None:
    """An addon that answers in dns_request: the flow's first hook is dns_response."""
    flow = dns_flow()
    pending = mdns.PendingQueries()
    pending.answered(flow)
    assert pending.client_gone(flow.client_conn.id) == ([], True)
    assert pending.client_gone("never-seen") == ([], False)


def test_a_dns_connection_that_sent_nothing_parseable() -> None:
    client = tflow.tclient_conn()
    client.proxy_mode = mode_specs.ProxyMode.parse("dns")
    client.transport_protocol = "udp"
    client.sockname = ("192.0.2.1", 53)
    record = mdns.unparsed_connection_record(client, 0)
    assert record.flow_id == flow_id(client.id)
    assert (record.start_ms, record.end_ms) == (946681200000, 946681206000)
    assert (record.client_address, record.client_port) == ("127.0.0.1", 22)
    assert (record.proxy_address, record.proxy_port) == ("192.0.2.1", 53)
    assert record.upstream_address == "" and record.protocol == 17
    assert (record.termination_state, record.flow_end_reason) == (T.REJECTED_BY_PROXY, 4)
    assert record.error == mdns.NO_MESSAGE and record.error
    assert record.query_name == "" and record.answers == ""


@pytest.mark.parametrize(("mode", "is_dns"), [
    ("dns", True), ("reverse:dns://9.9.9.9", True), ("regular", False),
    ("reverse:udp://9.9.9.9:53", False), ("transparent", False)])
def test_is_dns_connection(mode: str, is_dns: bool) -> None:
    client = tflow.tclient_conn()
    client.proxy_mode = mode_specs.ProxyMode.parse(mode)
    assert mdns.is_dns_connection(client) is is_dns


# -- TCP and UDP streams ----------------------------------------------------------------

Stream = tcp.TCPFlow | udp.UDPFlow
MAKE_STREAM: dict[str, Callable[..., Stream]] = {"tcp": tflow.ttcpflow, "udp": tflow.tudpflow}


def stream(kind: str = "tcp", **kwargs: Any) -> Stream:
    flow = MAKE_STREAM[kind](messages=[], **kwargs)
    flow.client_conn.peername = ("192.0.2.10", 40000)
    flow.client_conn.sockname = ("192.0.2.1", 8000)
    flow.server_conn.peername = ("198.51.100.7", 9000)
    return flow


def relay(streams: OpenStreams, flow: Stream, from_client: bool, content: bytes,
          timestamp: float) -> None:
    """A message passing, as the tcp_message / udp_message hook announces it."""
    message_type = tcp.TCPMessage if isinstance(flow, tcp.TCPFlow) else udp.UDPMessage
    flow.messages.append(message_type(from_client, content, timestamp))  # type: ignore[arg-type]
    streams.count_last_message(flow)


Step = tuple[bool, int] | None  # a message (from client, size), or None: an interim record


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 2000)) | st.none(), max_size=40),
       st.sampled_from(["tcp", "udp"]))
def test_interim_deltas_add_up_to_the_totals(steps: list[Step], kind: str) -> None:
    flow = stream(kind)
    streams = OpenStreams()
    counts = streams.start(flow, 0)
    records: list[ConnectionRecord] = []
    news = False
    for index, step in enumerate(steps):
        if step is None:
            assert counts.has_news is news
            records.append(stream_record(flow, counts, None, index, T.COMPLETED,
                                         FlowEndReason.ACTIVE_TIMEOUT))
            assert not counts.has_news
            news = False
        else:
            relay(streams, flow, step[0], b"x" * step[1], 946681201.0 + index)
            news = True
    records.append(stream_record(flow, counts, None, len(steps), T.COMPLETED,
                                 FlowEndReason.END_OF_FLOW))
    messages = [s for s in steps if s is not None]
    up = [size for from_client, size in messages if from_client]
    down = [size for from_client, size in messages if not from_client]
    assert sum(r.initiator_octets for r in records) == sum(up)
    assert sum(r.responder_octets for r in records) == sum(down)
    assert sum(r.initiator_messages for r in records) == len(up)
    assert sum(r.responder_messages for r in records) == len(down)
    for record in records:
        assert record.octets == record.initiator_octets + record.responder_octets
        assert record.flow_id == flow_id(flow.id)  # every record of the flow
        assert record.kind == (FlowKind.TCP_STREAM if kind == "tcp" else FlowKind.UDP_STREAM)


def test_counts_beyond_32_bits_stay_exact() -> None:
    flow = stream()
    counts = StreamCounts(flow, 0)
    for _ in range(3):
        counts.count(True, 2**31 + 7, 1.0)
    counts.count(False, 2**40, 2.0)
    record = ConnectionRecord()
    counts.take_deltas(record)
    assert record.initiator_octets == 3 * (2**31 + 7)
    assert record.octets == 3 * (2**31 + 7) + 2**40
    assert (record.initiator_messages, record.responder_messages) == (3, 1)


def test_a_stream_not_started_is_not_counted() -> None:
    streams = OpenStreams()
    relay(streams, stream(), True, b"abc", 1.0)
    assert streams.entries == {}


def test_starting_twice_keeps_the_counts() -> None:
    streams = OpenStreams()
    flow = stream()
    first = streams.start(flow, 10)
    relay(streams, flow, True, b"abc", 1.0)
    assert streams.start(flow, 20) is first and first.up_octets == 3
    assert first.last_message == 1.0
    assert streams.pop(flow.id) is first and streams.pop(flow.id) is None


def test_due_streams_restart_their_clock() -> None:
    streams = OpenStreams()
    early, late = stream(), stream()
    streams.start(early, 1000)
    streams.start(late, 50_000)
    assert [e.flow for e in streams.due(60_999, 60_000)] == []
    assert [e.flow for e in streams.due(61_000, 60_000)] == [early]
    assert streams.due(61_000, 60_000) == []  # its clock restarted
    assert [e.flow for e in streams.due(121_000, 60_000)] == [early, late]


def test_an_idle_stream_has_no_news() -> None:
    counts = StreamCounts(stream(), 0)
    assert not counts.has_news
    counts.count(False, 0, 1.0)  # an empty datagram is a message
    assert counts.has_news


TCP_TIMEOUT_S = 600
UDP_IDLE_S = 20  # mitmproxy ends a UDP stream after 20 s without a datagram


@pytest.mark.parametrize(("kind", "silent_s", "code"), [
    ("tcp", 1, T.COMPLETED),
    ("tcp", TCP_TIMEOUT_S - 5, T.COMPLETED),
    ("tcp", TCP_TIMEOUT_S, T.IDLE_TIMEOUT),
    ("tcp", TCP_TIMEOUT_S + 30, T.IDLE_TIMEOUT),
    ("udp", 5, T.COMPLETED),
    ("udp", UDP_IDLE_S, T.IDLE_TIMEOUT),  # whatever tcp_timeout says
])
def test_idle_streams(kind: str, silent_s: int, code: Termination) -> None:
    streams = OpenStreams()
    flow = stream(kind)
    counts = streams.start(flow, 0)
    relay(streams, flow, True, b"ping", 946681300.0)
    assert stream_termination(flow, counts, 946681300.0 + silent_s, TCP_TIMEOUT_S) == code
    record = stream_record(flow, counts, None, epoch_ms(946681300.0 + silent_s), code,
                           FlowEndReason.END_OF_FLOW)
    # an idle stream ends with its last message, as on a router
    assert record.end_ms == (946681300000 if code is T.IDLE_TIMEOUT
                             else epoch_ms(946681300.0 + silent_s))


def test_a_stream_without_messages_is_idle_from_its_start() -> None:
    flow = stream("udp")  # the client connected at 946681200
    assert stream_termination(flow, None, 946681200 + UDP_IDLE_S, TCP_TIMEOUT_S) == (
        T.IDLE_TIMEOUT)
    assert stream_termination(flow, None, 946681200 + 3, TCP_TIMEOUT_S) == T.COMPLETED
    counts = StreamCounts(flow, 0)
    assert stream_termination(flow, counts, 946681200 + 3, TCP_TIMEOUT_S) == T.COMPLETED


def never_connected(flow: Stream) -> Stream:
    flow.server_conn.peername = None
    return flow


@pytest.mark.parametrize(("message", "prepare", "code"), [
    (Error.KILLED_MESSAGE, stream, T.KILLED_BY_PROXY),
    ("[Errno 111] Connect call failed ('198.51.100.7', 9000)",
     lambda: never_connected(stream()), T.UPSTREAM_CONNECT_FAILED),
    ("[Errno -2] Name or service not known", lambda: never_connected(stream()),
     T.UPSTREAM_CONNECT_FAILED),
    ("Connection refused", stream, T.UPSTREAM_CONNECT_FAILED),
    ("[Errno 113] No route to host", lambda: stream("udp"), T.UPSTREAM_CONNECT_FAILED),
    ("something new", lambda: never_connected(stream()), T.UPSTREAM_CONNECT_FAILED),
    ("something new", stream, T.PROXY_ERROR),
])
def test_stream_termination_of_errors(message: str, prepare: Callable[[], Stream],
                                      code: Termination) -> None:
    flow = prepare()
    flow.error = Error(message)
    counts = StreamCounts(flow, 0)
    counts.count(True, 1, 946681201.0)
    # however long it was silent: the error says how it ended
    assert stream_termination(flow, counts, 946681201.0 + 10_000, TCP_TIMEOUT_S) == code


def test_a_stream_record() -> None:
    flow = stream("udp")
    flow.client_conn.sni = None
    flow.client_conn.alpn = None
    flow.client_conn.tls_version = None
    streams = OpenStreams()
    counts = streams.start(flow, 0)
    relay(streams, flow, True, b"q" * 30, 946681201.0)
    relay(streams, flow, False, b"a" * 500, 946681201.5)
    relay(streams, flow, False, b"a" * 20, 946681202.0)
    record = stream_record(flow, counts, None, 946681210000, T.COMPLETED,
                           FlowEndReason.END_OF_FLOW)
    assert record == ConnectionRecord(
        flow_id=flow_id(flow.id), start_ms=946681200000, end_ms=946681210000,
        client_address="192.0.2.10", proxy_address="192.0.2.1",
        upstream_address="198.51.100.7", client_port=40000, proxy_port=8000,
        upstream_port=9000, protocol=17, octets=550, initiator_octets=30,
        responder_octets=520, initiator_messages=1, responder_messages=2, flow_end_reason=3,
        termination_state=0, kind=FlowKind.UDP_STREAM)


def test_a_stream_record_carries_tls_facts() -> None:
    flow = stream("tcp")  # tclient_conn: sni "address", TLSv1.2, ALPN http/1.1
    hello = HelloFacts(server_name="hello.example", alpn_offers="h2,http/1.1",
                       version="TLSv1.3")
    record = stream_record(flow, None, hello, 0, T.COMPLETED, FlowEndReason.END_OF_FLOW)
    assert (record.tls_server_name, record.tls_offered_alpn, record.tls_offered_version) == (
        "hello.example", "h2,http/1.1", "TLSv1.3")
    assert (record.tls_version, record.tls_alpn) == ("TLSv1.2", "http/1.1")
    record = stream_record(flow, None, None, 0, T.COMPLETED, FlowEndReason.END_OF_FLOW)
    assert record.tls_server_name == "address"
    assert record.tls_offered_alpn == record.tls_offered_version == ""
    assert record.octets == 0  # no counts: nothing counted


def test_a_stream_error_is_one_line() -> None:
    flow = never_connected(stream())
    flow.error = Error("refused\r\nX-Injected: yes\x00")
    record = stream_record(flow, None, None, 0, T.UPSTREAM_CONNECT_FAILED,
                           FlowEndReason.FORCED_END)
    assert record.error.startswith("refused") and "X-Injected: yes" in record.error
    assert not CONTROL & set(record.error)


# -- TLS handshake failures, as mitmproxy 12.2's TLS layers report them -------------------


def tls_context(*, sni: str | None = "pinned.example") -> context.Context:
    client = tflow.tclient_conn()
    client.peername, client.sockname = ("192.0.2.10", 40000), ("192.0.2.1", 8443)
    client.sni, client.alpn, client.tls_version = sni, None, None  # the handshake failed
    ctx = context.Context(client, Options())
    ctx.server = tflow.tserver_conn()
    ctx.server.peername = ("198.51.100.7", 443)
    return ctx


def failed_handshake(client_side: bool, cause: str, ctx: context.Context | None = None
                     ) -> TlsData:
    """The hook data mitmproxy's own TLS layer gives addons when a handshake fails with
    `cause` (what its OpenSSL or connection handling reported)."""
    ctx = ctx or tls_context()
    server_layer = tls_layers.ServerTLSLayer(ctx)
    layer: tls_layers.TLSLayer = (tls_layers.ClientTLSLayer(ctx) if client_side
                                  else server_layer)
    hook = tls_layers.TlsFailedClientHook if client_side else tls_layers.TlsFailedServerHook
    hooks = [c for c in layer.on_handshake_error(cause) if isinstance(c, hook)]
    assert len(hooks) == 1
    data = hooks[0].data
    assert isinstance(data, TlsData) and data.conn.error
    return data


# the causes mitmproxy's TLSLayer.receive_handshake_data and tunnel layer report
@pytest.mark.parametrize(("cause", "code"), [
    ("tlsv1 alert unknown ca", T.CLIENT_REJECTED_CERTIFICATE),
    ("sslv3 alert bad certificate", T.CLIENT_REJECTED_CERTIFICATE),
    ("ssl/tls alert bad certificate", T.CLIENT_REJECTED_CERTIFICATE),
    ("OpenSSL Error([('SSL routines', '', 'sslv3 alert certificate unknown')])",
     T.CLIENT_REJECTED_CERTIFICATE),
    # mitmproxy only guesses: "this may indicate that the client does not trust ..."
    ("connection closed", T.CLIENT_TLS_FAILED),
    ("connection closed early", T.CLIENT_TLS_FAILED),
    ("OpenSSL Error([('SSL routines', '', 'unexpected eof while reading')])",
     T.CLIENT_TLS_FAILED),
    ("OpenSSL Error([('SSL routines', '', 'unsupported protocol')])", T.CLIENT_TLS_FAILED),
    ("OpenSSL Error([('SSL routines', '', 'no shared cipher')])", T.CLIENT_TLS_FAILED),
    ("Cannot parse ClientHello: 160301000100", T.CLIENT_TLS_FAILED),
])
def test_client_side_failures(cause: str, code: Termination) -> None:
    data = failed_handshake(True, cause)
    error = data.conn.error
    assert error is not None
    assert tls_failure_code(error, client_side=True) == code


@pytest.mark.parametrize(("cause", "code"), [
    ("Certificate verify failed: self-signed certificate", T.UPSTREAM_CERTIFICATE_INVALID),
    ("Certificate verify failed: certificate has expired", T.UPSTREAM_CERTIFICATE_INVALID),
    ("Certificate verify failed: unable to get local issuer certificate",
     T.UPSTREAM_CERTIFICATE_INVALID),
    ("Certificate verify failed: Hostname mismatch", T.UPSTREAM_CERTIFICATE_INVALID),
    ("tlsv1 alert unknown ca", T.UPSTREAM_TLS_FAILED),  # the upstream refused ours
    ("The remote server does not speak TLS.", T.UPSTREAM_TLS_FAILED),
    ("The remote server and mitmproxy cannot agree on a TLS version to use. You may need "
     "to adjust mitmproxy's tls_version_server_min option.", T.UPSTREAM_TLS_FAILED),
    ("OpenSSL Error([('SSL routines', '', 'sslv3 alert handshake failure')])",
     T.UPSTREAM_TLS_FAILED),
    ("connection closed", T.UPSTREAM_TLS_FAILED),
])
def test_upstream_side_failures(cause: str, code: Termination) -> None:
    data = failed_handshake(False, cause)
    assert data.conn.error == cause  # the server layer passes its cause on as it is
    assert tls_failure_code(cause, client_side=False) == code


def test_the_side_decides_the_family_of_codes() -> None:
    sentence = "Certificate verify failed: self-signed certificate"
    assert tls_failure_code(sentence, client_side=True) == T.CLIENT_TLS_FAILED
    assert tls_failure_code("The client does not trust the proxy's certificate for x (y)",
                            client_side=False) == T.UPSTREAM_TLS_FAILED


def test_a_client_side_failure_record() -> None:
    data = failed_handshake(True, "tlsv1 alert unknown ca")
    hello = HelloFacts(server_name="pinned.example", alpn_offers="h2,http/1.1",
                       version="TLSv1.3", cuts=1)
    record, cut_fields = tls_failure_record(data, hello, 946681203000, Limits())
    assert cut_fields == 1  # the client's hello's own cuts
    client = data.context.client
    assert record.flow_id == flow_id(client.id)
    assert (record.start_ms, record.end_ms) == (946681200000, 946681203000)
    assert (record.client_address, record.client_port) == ("192.0.2.10", 40000)
    assert (record.proxy_address, record.proxy_port) == ("192.0.2.1", 8443)
    assert (record.upstream_address, record.upstream_port) == ("198.51.100.7", 443)
    assert record.protocol == 6
    assert record.kind == FlowKind.TLS_FAILURE
    assert record.flow_end_reason == FlowEndReason.FORCED_END
    assert record.termination_state == T.CLIENT_REJECTED_CERTIFICATE
    assert "pinned.example" in record.error and "unknown ca" in record.error
    assert (record.tls_server_name, record.tls_offered_alpn, record.tls_offered_version) == (
        "pinned.example", "h2,http/1.1", "TLSv1.3")
    assert (record.tls_version, record.tls_alpn) == ("", "")  # nothing was negotiated
    assert record.octets == record.initiator_messages == 0


def test_an_upstream_side_failure_record() -> None:
    ctx = tls_context()
    ctx.server.sni = "origin.example"
    ctx.server.alpn_offers = [b"h2", b"http/1.1"]
    data = failed_handshake(False, "Certificate verify failed: self-signed certificate", ctx)
    client_hello_facts = HelloFacts(server_name="ignored.example", version="TLSv1.3")
    record, cut_fields = tls_failure_record(data, client_hello_facts, 946681203000, Limits())
    assert cut_fields == 0
    assert record.flow_id == flow_id(ctx.server.id)  # the connection whose handshake failed
    assert record.termination_state == T.UPSTREAM_CERTIFICATE_INVALID
    assert record.kind == FlowKind.TLS_FAILURE and record.flow_end_reason == 4
    # what the proxy offered the upstream; its versions are its own settings
    assert (record.tls_server_name, record.tls_offered_alpn, record.tls_offered_version) == (
        "origin.example", "h2,http/1.1", "")
    assert record.error == "Certificate verify failed: self-signed certificate"


def test_the_alpn_the_proxy_offered_an_upstream_is_cut_between_values() -> None:
    ctx = tls_context()
    ctx.server.alpn_offers = [b"h2", b"http/1.1", b"x" * 40]
    data = failed_handshake(False, "Certificate verify failed: self-signed certificate", ctx)
    record, cut_fields = tls_failure_record(data, None, 0, Limits(alpn_offers=12))
    assert record.tls_offered_alpn == "h2,http/1.1"
    assert cut_fields == 1


def test_a_failure_record_of_a_client_without_sni() -> None:
    data = failed_handshake(True, "connection closed", tls_context(sni=None))
    record, _ = tls_failure_record(data, None, 0, Limits())
    assert record.tls_server_name == ""
    assert record.termination_state == T.CLIENT_TLS_FAILED
    assert not CONTROL & set(record.error) and record.error


def passthrough(*, connected: bool = True, hello: HelloFacts | None = None,
                transport: str = "tcp") -> Passthrough:
    client = tflow.tclient_conn()
    client.peername, client.sockname = ("2001:db8::10", 50000), ("2001:db8::1", 443)
    client.transport_protocol = transport  # type: ignore[assignment]
    client.sni, client.alpn, client.tls_version = None, None, None  # relayed, not read
    server = tflow.tserver_conn()
    server.peername = ("198.51.100.7", 443)
    if not connected:
        server.peername, server.timestamp_start = None, None
        server.error = "[Errno 111] Connect call failed ('198.51.100.7', 443)"
    return Passthrough(client, server, hello)


def test_a_passthrough_record() -> None:
    hello = HelloFacts(server_name="bank.example", alpn_offers="h2", version="TLSv1.3")
    entry = passthrough(hello=hello)
    record = passthrough_record(entry, 0)
    assert record == ConnectionRecord(
        flow_id=flow_id(entry.client.id), start_ms=946681200000, end_ms=946681206000,
        client_address="2001:db8::10", proxy_address="2001:db8::1",
        upstream_address="198.51.100.7", client_port=50000, proxy_port=443,
        upstream_port=443, protocol=6, octets=0, initiator_octets=0, responder_octets=0,
        initiator_messages=0, responder_messages=0, flow_end_reason=3, termination_state=0,
        kind=FlowKind.PASSTHROUGH, tls_server_name="bank.example", tls_version="",
        tls_alpn="", tls_offered_alpn="h2", tls_offered_version="TLSv1.3", error="")


def test_a_passthrough_whose_upstream_was_never_reached() -> None:
    record = passthrough_record(passthrough(connected=False, transport="udp"), 0)
    assert (record.termination_state, record.flow_end_reason) == (
        T.UPSTREAM_CONNECT_FAILED, FlowEndReason.FORCED_END)
    assert record.upstream_address == "" and record.upstream_port == 0
    assert record.protocol == 17 and record.kind == FlowKind.PASSTHROUGH
    assert record.error == "[Errno 111] Connect call failed ('198.51.100.7', 443)"
    assert record.tls_server_name == ""  # no hello, no SNI


def test_a_passthrough_still_open_at_the_end() -> None:
    entry = passthrough()
    entry.client.timestamp_end = None
    assert passthrough_record(entry, 946681999000).end_ms == 946681999000


# -- eager connects that failed before any flow --------------------------------------------


@pytest.mark.parametrize(("mode", "transport", "kind", "record_type", "flow_kind"), [
    ("reverse:tcp://example.com:22", "tcp", "tcp", ConnectionRecord, FlowKind.TCP_STREAM),
    ("reverse:tls://example.com:443", "tcp", "tcp", ConnectionRecord, FlowKind.TCP_STREAM),
    ("reverse:udp://example.com:53", "udp", "udp", ConnectionRecord, FlowKind.UDP_STREAM),
    ("reverse:dns://9.9.9.9", "udp", "dns", DnsRecord, None),
    ("reverse:http://example.com:80", "tcp", "http", HttpFlowRecord, None),
    ("regular", "tcp", "http", HttpFlowRecord, None),
    ("transparent", "tcp", "tcp", ConnectionRecord, FlowKind.TCP_STREAM),
    ("transparent", "udp", "udp", ConnectionRecord, FlowKind.UDP_STREAM),
])
def test_connect_failures(mode: str, transport: str, kind: str, record_type: type,
                          flow_kind: FlowKind | None) -> None:
    client = tflow.tclient_conn()
    client.proxy_mode = mode_specs.ProxyMode.parse(mode)
    client.transport_protocol = transport  # type: ignore[assignment]
    client.sockname = ("192.0.2.1", 8080)
    server = connection.Server(address=("example.com", 22), transport_protocol=transport)  # type: ignore[arg-type]
    server.error = "[Errno 111] Connect call failed ('198.51.100.7', 22)"
    got_kind, record = connect_failure(
        server_hooks.ServerConnectionHookData(server=server, client=client), 946681201000)
    assert got_kind == kind and type(record) is record_type
    if isinstance(record, ConnectionRecord | DnsRecord):
        assert record.flow_id == flow_id(client.id)
        assert record.termination_state == T.UPSTREAM_CONNECT_FAILED
        assert record.flow_end_reason == FlowEndReason.FORCED_END
        assert record.protocol == (6 if transport == "tcp" else 17)
        assert record.error == server.error
        assert (record.start_ms, record.end_ms) == (946681200000, 946681201000)
    if isinstance(record, ConnectionRecord):
        assert record.kind == flow_kind


LABELS = st.text("abcxyz019-äöüßéñ中", min_size=1, max_size=12).filter(
    lambda label: not label.startswith("-") and not label.endswith("-"))


def _packable(name: str) -> bool:
    try:
        return all(0 < len(label.encode("idna")) < 64 for label in name.split("."))
    except UnicodeError:
        return False


NAMES = st.one_of(st.just(""), st.lists(LABELS, min_size=1, max_size=4).map(".".join)
                  .filter(_packable))
RECORDS = st.builds(dns.ResourceRecord, name=NAMES, type=st.sampled_from([1, 5, 16, 28, 41]),
                    class_=st.just(1), ttl=st.integers(0, 2**32 - 1),
                    data=st.binary(max_size=40))


@settings(max_examples=150, deadline=None)
@given(questions=st.lists(NAMES, max_size=2), answers=st.lists(RECORDS, max_size=4),
       additionals=st.lists(RECORDS, max_size=2), over_tcp=st.booleans())
def test_message_sizes_are_counted_as_mitmproxy_packs_them(
        questions: list[str], answers: list[dns.ResourceRecord],
        additionals: list[dns.ResourceRecord], over_tcp: bool) -> None:
    message = dns.DNSMessage(
        id=7, query=False, op_code=0, authoritative_answer=False, truncation=False,
        recursion_desired=True, recursion_available=True, reserved=0, response_code=0,
        questions=[dns.Question(name, 1, 1) for name in questions], answers=answers,
        authorities=answers[:1], additionals=additionals)
    assert mdns.message_size(message, over_tcp) == len(message.packed) + 2 * over_tcp
