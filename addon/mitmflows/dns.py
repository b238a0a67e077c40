"""DNS: one record per query and its answer, over UDP or TCP (`--mode dns`,
`reverse:dns://`, and port 53 in transparent modes).

mitmproxy makes one flow per transaction id of a connection and calls dns_response when
the answer comes (from the upstream or from an addon such as its own resolver), or
dns_error. A query whose answer never comes gets neither: it would be lost silently, so
queries wait in `PendingQueries` until their answer, and those still waiting when their
client goes become records of their own (UPSTREAM_TIMEOUT). A message mitmproxy cannot
parse makes no flow at all, and mitmproxy closes the connection: a DNS connection that
ends without any flow becomes a record saying so (REJECTED_BY_PROXY).

Sizes are those of the messages as mitmproxy sends them on (re-encoded, without name
compression; over TCP with their two-byte length), since mitmproxy keeps no other.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import dns
from mitmproxy.flow import Error
from mitmproxy.net.dns import types
from mitmproxy.proxy import mode_specs

from ipfix.dns_record import ANSWER_SEPARATOR, DnsRecord
from ipfix.termination import FlowEndReason, Termination
from ipfix.text import safe_text

from .convert import clean, endpoint, endpoints, flow_id_of, ms
from .hello import join_within
from .streams import CONNECT_FAILED

NO_MESSAGE = "no DNS message the proxy could parse"
NO_ANSWER = "no answer before the connection ended"
SHUT_DOWN = "no answer before the proxy shut down"


def flags_word(message: dns.DNSMessage) -> int:
    """The header's second 16-bit word (RFC 1035 4.1.1; Z holds RFC 4035's AD and CD)."""
    return ((0 if message.query else 1 << 15) | (message.op_code & 0xF) << 11
            | message.authoritative_answer << 10 | message.truncation << 9
            | message.recursion_desired << 8 | message.recursion_available << 7
            | (message.reserved & 0x7) << 4 | (message.response_code & 0xF))


def answer_text(record: dns.ResourceRecord) -> str:
    """'name TYPE data', data as people read it: addresses, names, text; hex otherwise."""
    try:
        match record.type:
            case types.A:
                data = str(record.ipv4_address)
            case types.AAAA:
                data = str(record.ipv6_address)
            case types.CNAME | types.NS | types.PTR | types.DNAME:
                data = record.domain_name
            case types.TXT:
                data = " ".join(txt_text(part) for part in character_strings(record.data))
            case _:
                data = "0x" + record.data.hex()
    except Exception:  # data that does not parse as its type says
        data = "0x" + record.data.hex()
    return f"{safe_text(record.name.encode())} {types.to_str(record.type)} {data}"


# In TXT strings, RFC 1035's \DDD escapes (5.1) for what would confuse a reader of the
# record: the quote (goflow2's JSON output does not escape it and drops the datagram's
# remaining records), the backslash, and ';' that separates answers.
_TXT_ESCAPES = str.maketrans({'"': "\\034", "\\": "\\092", ";": "\\059"})


def txt_text(part: bytes) -> str:
    """One TXT character-string, unquoted (strings are separated by spaces)."""
    return safe_text(part).translate(_TXT_ESCAPES)


def character_strings(data: bytes) -> list[bytes]:
    """TXT data: one or more strings, each after its length byte (RFC 1035 3.3.14)."""
    parts, index = [], 0
    while index < len(data):
        length = data[index]
        parts.append(data[index + 1:index + 1 + length])
        index += 1 + length
    return parts


def message_size(message: dns.DNSMessage | None, over_tcp: bool) -> int:
    """The bytes of `message` as mitmproxy packs it (no name compression), counted rather
    than packed: packing runs every name through IDNA and costs more than the record."""
    if message is None:
        return 0
    size = _HEADER + (2 if over_tcp else 0)
    try:
        for question in message.questions:
            size += _name_size(question.name) + 4  # type, class
        for record in (*message.answers, *message.authorities, *message.additionals):
            size += _name_size(record.name) + 10 + len(record.data)  # type class ttl length
    except UnicodeError:  # a name IDNA refuses: mitmproxy cannot send it either
        return 0
    return size


_HEADER = 12


def _name_size(name: str) -> int:
    """Length bytes, labels and the root's zero (RFC 1035 3.1); ASCII labels stay as
    they are in IDNA."""
    if not name:
        return 1
    if name.isascii():
        return len(name) + 2
    return sum(len(label.encode("idna")) + 1 for label in name.split(".")) + 1


def dns_termination(flow: dns.DNSFlow) -> Termination:
    error = flow.error
    if error is None:
        return Termination.COMPLETED
    message = error.msg
    if message == Error.KILLED_MESSAGE:
        return Termination.KILLED_BY_PROXY
    if message.startswith((*CONNECT_FAILED, "Connection killed")):
        return Termination.UPSTREAM_CONNECT_FAILED  # also an addon's refusal to connect
    return Termination.PROXY_ERROR


def dns_record(flow: dns.DNSFlow, now_ms: int, answers_limit: int,
               termination: Termination | None = None,
               why: str = NO_ANSWER) -> tuple[DnsRecord, int]:
    """The record of a query, answered or failed (or unanswered, with `termination` and
    `why`), and how many answers were left out to keep dnsAnswers within `answers_limit`
    bytes."""
    client = flow.client_conn
    client_host, client_port, proxy_host, proxy_port = endpoints(client.peername,
                                                                 client.sockname)
    upstream_host, upstream_port = endpoint(flow.server_conn.peername)
    over_tcp = client.transport_protocol == "tcp"
    request, response = flow.request, flow.response
    question = request.question if request is not None else None
    termination = dns_termination(flow) if termination is None else termination
    up, down = message_size(request, over_tcp), message_size(response, over_tcp)
    record = DnsRecord(
        flow_id=flow_id_of(flow.id),
        start_ms=ms(request.timestamp if request is not None else None)
        or ms(flow.timestamp_created) or now_ms,
        end_ms=ms(response.timestamp if response is not None else None) or now_ms,
        client_address=client_host, proxy_address=proxy_host, upstream_address=upstream_host,
        client_port=client_port, proxy_port=proxy_port, upstream_port=upstream_port,
        protocol=6 if over_tcp else 17, octets=up + down, initiator_octets=up,
        responder_octets=down,
        flow_end_reason=(FlowEndReason.END_OF_FLOW if termination is Termination.COMPLETED
                         else FlowEndReason.FORCED_END),
        termination_state=termination, transaction_id=request.id if request is not None else 0,
        query_name=safe_text(question.name.encode()) if question is not None else "",
        query_type=question.type if question is not None else 0,
        query_class=question.class_ if question is not None else 0,
        error=clean(flow.error.msg) if flow.error is not None else
        ("" if termination is Termination.COMPLETED else why))
    cut = 0
    header = response if response is not None else request
    if header is not None:
        record.flags = flags_word(header)
    if response is not None:
        record.response_code = response.response_code
        record.answer_count = len(response.answers)
        record.answers, cut = join_within([answer_text(a) for a in response.answers],
                                          ANSWER_SEPARATOR, answers_limit)
        record.minimum_ttl = min((a.ttl for a in response.answers), default=0)
    return record, cut


def is_dns_connection(client: Any) -> bool:
    """A connection of a DNS server mode, where every message should make a flow."""
    mode = client.proxy_mode
    return isinstance(mode, mode_specs.DnsMode) or (
        isinstance(mode, mode_specs.ReverseMode) and mode.scheme == "dns")


def unparsed_connection_record(client: Any, now_ms: int) -> DnsRecord:
    """A DNS connection that ended without any flow: what it sent did not parse."""
    client_host, client_port, proxy_host, proxy_port = endpoints(client.peername,
                                                                 client.sockname)
    return DnsRecord(
        flow_id=flow_id_of(client.id), start_ms=ms(client.timestamp_start) or now_ms,
        end_ms=ms(client.timestamp_end) or now_ms, client_address=client_host,
        proxy_address=proxy_host, client_port=client_port, proxy_port=proxy_port,
        protocol=6 if client.transport_protocol == "tcp" else 17,
        flow_end_reason=FlowEndReason.FORCED_END,
        termination_state=Termination.REJECTED_BY_PROXY, error=NO_MESSAGE)


class PendingQueries:
    """Queries waiting for their answer, by client connection; and which DNS connections
    have made any flow at all."""

    def __init__(self) -> None:
        self.by_client: dict[str, dict[str, dns.DNSFlow]] = {}
        self.clients_with_flows: set[str] = set()

    def add(self, flow: dns.DNSFlow) -> None:
        client_id = flow.client_conn.id
        self.clients_with_flows.add(client_id)
        self.by_client.setdefault(client_id, {})[flow.id] = flow

    def answered(self, flow: dns.DNSFlow) -> None:
        client_id = flow.client_conn.id
        self.clients_with_flows.add(client_id)  # an answer an addon made up front
        waiting = self.by_client.get(client_id)
        if waiting is not None:
            waiting.pop(flow.id, None)
            if not waiting:
                del self.by_client[client_id]

    def server_gone(self, client_id: str) -> list[dns.DNSFlow]:
        """The queries of a client whose upstream connection closed: mitmproxy reads no
        answer after that (and over TCP keeps a client that half-closed until shutdown)."""
        return list(self.by_client.pop(client_id, {}).values())

    def client_gone(self, client_id: str) -> tuple[list[dns.DNSFlow], bool]:
        """The queries of a client that went unanswered, and whether it made any flow."""
        waiting = self.by_client.pop(client_id, {})
        had_flows = client_id in self.clients_with_flows
        self.clients_with_flows.discard(client_id)
        return list(waiting.values()), had_flows
