"""DNS through a real mitmdump (`reverse:dns://`) to a small server of the tests' own:
one record per query and answer over UDP and TCP, with dig and with a client of ours
whose message sizes are known; a truncated answer retried over TCP, a query never
answered and a message that does not parse each get a record of their own; every record
read the same by tshark and by nfacctd with the primitives we ship."""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import dns

from ipfix.dns_record import ANSWER_SEPARATOR
from ipfix.session import ExportFormat
from ipfix.termination import FlowEndReason, Termination
from tests.conftest import free_udp_port
from tests.servers import DnsServer
from tests.three_decoders import ObservedProxy

pytestmark = pytest.mark.slow

A, AAAA, CNAME = 1, 28, 5
NXDOMAIN = 3
TRUNCATED = 1 << 9
# bytes of dnsAnswers, so that big.test's 100 answers are cut; lists are cut for the
# smaller of the IPFIX limit and the v9 width (less its NUL), so both are set
ANSWERS_LIMIT = 300


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.server = DnsServer()
        self.port = free_udp_port()
        self.proxy = ObservedProxy(
            tmp_path,
            "--mode", f"reverse:dns://127.0.0.1:{self.server.port}@127.0.0.1:{self.port}",
            "--set", f"flowexport_max_lengths=dnsAnswers={ANSWERS_LIMIT}",
            netflow9_widths={"dnsAnswers": ANSWERS_LIMIT + 1})
        self.proxy.wait_listening(self.port)

    def close(self) -> None:
        self.proxy.close()
        self.server.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    running = Setup(tmp_path_factory.mktemp("dns"))
    yield running
    running.close()


def query(name: str, qtype: int, transaction_id: int) -> dns.DNSMessage:
    return dns.DNSMessage(
        id=transaction_id, query=True, op_code=0, authoritative_answer=False,
        truncation=False, recursion_desired=True, recursion_available=False, reserved=0,
        response_code=0, questions=[dns.Question(name, qtype, 1)], answers=[],
        authorities=[], additionals=[])


def ask_udp(port: int, message: dns.DNSMessage) -> tuple[int, bytes]:
    """(the client's port, the answer as received)"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(message.packed, ("127.0.0.1", port))
        return int(sock.getsockname()[1]), sock.recvfrom(1 << 16)[0]


def dns_records(setup: Setup, port: int) -> list[dict[str, Any]]:
    return [r for r in setup.proxy.records()
            if r.get("sourceTransportPort") == port and "dnsQueryName" in r]


def test_each_query_over_udp_is_one_record_field_by_field(setup: Setup) -> None:
    cases = [("www.test", A, 0x1001), ("www.test", AAAA, 0x1002), ("chain.test", A, 0x1003),
             ("nx.test", A, 0x1004)]
    sent: dict[int, tuple[dns.DNSMessage, int, bytes]] = {}
    for name, qtype, tid in cases:
        message = query(name, qtype, tid)
        local, received = ask_udp(setup.port, message)
        sent[tid] = (message, local, received)
    for tid, (message, local, raw) in sent.items():
        setup.proxy.wait_for(lambda r: "dnsQueryName" in r, count=len(sent))
        record = dns_records(setup, local)[0]
        answer = dns.DNSMessage.unpack(raw)
        assert answer.id == tid
        question = message.questions[0]
        assert record["dnsTransactionId"] == tid
        assert record["dnsQueryName"] == question.name
        assert record["dnsQueryType"] == question.type
        assert record["dnsQueryClass"] == 1
        assert record["dnsResponseCode"] == answer.response_code
        assert record["dnsFlags"] == struct.unpack("!H", raw[2:4])[0]
        assert record["dnsAnswerCount"] == len(answer.answers)
        assert record["dnsMinimumTtl"] == min((a.ttl for a in answer.answers), default=0)
        # our client's query and the server's answer carry no compressed names, so the
        # sizes mitmproxy re-encodes are those on the wire
        assert record["initiatorOctets"] == len(message.packed)
        assert record["responderOctets"] == len(raw)
        assert record["octetDeltaCount"] == len(message.packed) + len(raw)
        assert record["protocolIdentifier"] == 17
        assert record["sourceIPv4Address"] == "127.0.0.1"
        assert record["destinationTransportPort"] == setup.port
        assert record["postNATDestinationIPv4Address"] == "127.0.0.1"
        assert record["postNAPTDestinationTransportPort"] == setup.server.port
        assert record["flowEndReason"] == FlowEndReason.END_OF_FLOW
        assert record["flowTerminationStateCode"] == Termination.COMPLETED
        assert record["proxyErrorMessage"] == ""
        assert 0 <= record["flowEndMilliseconds"] - record["flowStartMilliseconds"] < 5000
    by_tid = {tid: dns_records(setup, local)[0] for tid, (_, local, _) in sent.items()}
    assert by_tid[0x1001]["dnsAnswers"] == "www.test A 192.0.2.5"
    assert by_tid[0x1001]["dnsMinimumTtl"] == 600
    assert by_tid[0x1002]["dnsAnswers"] == "www.test AAAA 2001:db8::5"
    assert by_tid[0x1003]["dnsAnswers"] == ANSWER_SEPARATOR.join(
        ["chain.test CNAME mid.test", "mid.test CNAME end.test", "end.test A 192.0.2.7"])
    assert by_tid[0x1003]["dnsMinimumTtl"] == 30
    assert by_tid[0x1004]["dnsResponseCode"] == NXDOMAIN
    assert by_tid[0x1004]["dnsAnswers"] == ""


def dig(port: int, *args: str) -> str:
    result = subprocess.run(["dig", "-p", str(port), "@127.0.0.1", "+time=5", "+tries=1",
                             *args], capture_output=True, text=True, timeout=30, check=True)
    return result.stdout


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig (bind9-dnsutils) not installed")
def test_dig_retries_a_truncated_answer_over_tcp_and_both_are_recorded(setup: Setup) -> None:
    output = dig(setup.port, "big.test", "A")
    assert "Truncated, retrying in TCP mode" in output
    transaction_id = int(re.findall(r"status: NOERROR, id: (\d+)", output)[-1])
    records = setup.proxy.wait_for(lambda r: r.get("dnsQueryName") == "big.test", count=2)
    assert [q for q in setup.server.queries if q[1] == "big.test"] == [
        ("udp", "big.test"), ("tcp", "big.test")]
    over_udp = [r for r in records if r["protocolIdentifier"] == 17]
    over_tcp = [r for r in records if r["protocolIdentifier"] == 6]
    assert len(over_udp) == len(over_tcp) == 1
    assert over_udp[0]["dnsFlags"] & TRUNCATED
    assert over_udp[0]["dnsAnswerCount"] == 0
    final = over_tcp[0]
    assert final["dnsTransactionId"] == transaction_id
    assert not final["dnsFlags"] & TRUNCATED
    assert final["dnsAnswerCount"] == 100  # every answer counted, not every one listed
    assert final["dnsMinimumTtl"] == 61
    answers = final["dnsAnswers"].split(ANSWER_SEPARATOR)
    assert len(final["dnsAnswers"].encode()) <= ANSWERS_LIMIT
    # cut on a record boundary: whole answers, the first ones, in order
    assert answers == [f"big.test A 198.51.100.{i}" for i in range(1, len(answers) + 1)]
    assert 5 < len(answers) < 100
    # sizes over TCP include each message's two-byte length
    assert final["initiatorOctets"] > 2 and final["responderOctets"] > 100 * 16


def test_a_query_never_answered_is_recorded_when_its_client_goes(setup: Setup) -> None:
    message = query("silent.test", A, 0x2222).packed
    with socket.create_connection(("127.0.0.1", setup.port), timeout=5) as sock:
        local = sock.getsockname()[1]
        sock.sendall(struct.pack("!H", len(message)) + message)
        time.sleep(0.5)  # the upstream got it and stays silent
    record = setup.proxy.wait_for(lambda r: r.get("sourceTransportPort") == local)[0]
    assert record["dnsQueryName"] == "silent.test"
    assert record["dnsTransactionId"] == 0x2222
    assert record["protocolIdentifier"] == 6
    assert record["flowTerminationStateCode"] == Termination.UPSTREAM_TIMEOUT
    assert record["flowEndReason"] == FlowEndReason.FORCED_END
    assert record["proxyErrorMessage"] == "no answer before the connection ended"
    assert record["initiatorOctets"] == len(message) + 2
    assert record["responderOctets"] == 0
    assert record["dnsAnswerCount"] == 0


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_message_that_does_not_parse_is_a_record_of_its_own(
        setup: Setup, transport: str) -> None:
    garbage = b"\x12\x34" + b"\xff" * 9  # shorter than a DNS header
    if transport == "tcp":
        with socket.create_connection(("127.0.0.1", setup.port), timeout=5) as sock:
            local = sock.getsockname()[1]
            sock.sendall(struct.pack("!H", len(garbage)) + garbage)
            assert sock.recv(10) == b""  # mitmproxy closes the connection
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(garbage, ("127.0.0.1", setup.port))
            local = sock.getsockname()[1]
    record = setup.proxy.wait_for(lambda r: r.get("sourceTransportPort") == local)[0]
    assert record["protocolIdentifier"] == (6 if transport == "tcp" else 17)
    assert record["flowTerminationStateCode"] == Termination.REJECTED_BY_PROXY
    assert record["flowEndReason"] == FlowEndReason.FORCED_END
    assert record["proxyErrorMessage"] == "no DNS message the proxy could parse"
    assert record["dnsQueryName"] == ""
    assert record["postNATDestinationIPv4Address"] == "0.0.0.0"


def test_every_dns_record_decodes_alike_elsewhere(setup: Setup) -> None:
    """Last in the module: stops mitmdump, then tshark and nfacctd read what it sent."""
    setup.proxy.stop()
    ipfix = [r for r in setup.proxy.records() if "dnsQueryName" in r]
    netflow9 = [r for r in setup.proxy.records(ExportFormat.NETFLOW9) if "dnsQueryName" in r]
    assert len(ipfix) == 9  # four, two for big.test, one silent, two unparsed
    assert not [r for r in setup.proxy.records() if "httpRequestMethod" in r]
    # the statistics line counts the cut answers (and nothing else was cut)
    assert re.findall(r"(\d+) truncated", setup.proxy.proxy.log())[-1] == "1"
    key = ("flowId", "flowEndMilliseconds", "dnsTransactionId", "dnsQueryType",
           "dnsResponseCode", "dnsFlags", "dnsAnswerCount", "dnsMinimumTtl", "initiatorOctets",
           "responderOctets", "flowTerminationStateCode")
    assert sorted(tuple(r[k] for k in key) for r in ipfix) == sorted(
        tuple(r[k] for k in key) for r in netflow9)
    by_id = {r["flowId"]: r for r in ipfix}
    for record in netflow9:  # answers are cut for both formats alike
        assert by_id[record["flowId"]]["dnsAnswers"] == record["dnsAnswers"]
    chosen = lambda r: "dnsQueryName" in r  # noqa: E731
    assert setup.proxy.check_with_tshark(ExportFormat.IPFIX, chosen) == len(ipfix)
    assert setup.proxy.check_with_tshark(ExportFormat.NETFLOW9, chosen) == len(ipfix)
    assert setup.proxy.check_with_pmacct(free_udp_port(), chosen) == len(ipfix)
