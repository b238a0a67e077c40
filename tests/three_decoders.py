"""One mitmdump run, its export read three ways: our decoder, tshark, and pmacct's nfacctd
with the configuration and primitives we ship.

mitmdump exports to two receivers in the test process, one IPFIX and one NetFlow v9,
which keep every datagram as it arrived. Our decoder gives the records the tests check
against what the clients did; tshark and nfacctd then read the very same datagrams, and
every record must come out of them with the same values, field by field.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ipfix.datatypes import DataType
from ipfix.ie import DEFAULT_REGISTRY, InformationElement, snake_case
from ipfix.records import DEFAULT_V9_WIDTHS
from ipfix.session import ExportFormat
from tests.e2e import Mitmdump, Receiver, wait_until
from tests.pcap import write_pcap
from tests.tshark import flows, tshark_json, tshark_problems, tshark_time

Record = dict[str, Any]

# our IANA elements as tshark names them
TSHARK_KEYS = {
    "sourceIPv4Address": "cflow.srcaddr", "sourceIPv6Address": "cflow.srcaddrv6",
    "destinationIPv4Address": "cflow.dstaddr", "destinationIPv6Address": "cflow.dstaddrv6",
    "postNATDestinationIPv4Address": "cflow.post_natdestination_ipv4_address",
    "postNATDestinationIPv6Address": "cflow.post_nat_destination_ipv6_address",
    "sourceTransportPort": "cflow.srcport", "destinationTransportPort": "cflow.dstport",
    "postNAPTDestinationTransportPort": "cflow.post_naptdestination_transport_port",
    "protocolIdentifier": "cflow.protocol", "octetDeltaCount": "cflow.octets",
    "initiatorOctets": "cflow.initiator_octets", "responderOctets": "cflow.responder_octets",
    "flowId": "cflow.flow_id", "flowEndReason": "cflow.flow_end_reason",
}
# elements nfacctd reads into its own fields
PMACCT_KEYS = {"sourceIPv4Address": "ip_src", "sourceIPv6Address": "ip_src",
               "destinationIPv4Address": "ip_dst", "destinationIPv6Address": "ip_dst",
               "sourceTransportPort": "port_src", "destinationTransportPort": "port_dst"}
PMACCT_SKIPPED = {"protocolIdentifier", "octetDeltaCount", "flowStartMilliseconds",
                  "flowEndMilliseconds"}  # built-ins the print plugin shows otherwise


class ObservedProxy:
    """mitmdump with the addon, exporting IPFIX and NetFlow v9 to receivers of ours."""

    def __init__(self, tmp_path: Path, *args: str,
                 netflow9_widths: Mapping[str, int] | None = None) -> None:
        self.tmp_path = tmp_path
        self.netflow9_widths = {**DEFAULT_V9_WIDTHS, **(netflow9_widths or {})}
        widths = [f"flowexport_netflow9_widths={name}={width}"
                  for name, width in (netflow9_widths or {}).items()]
        self.ipfix = Receiver()
        self.netflow9 = Receiver()
        # a regular-mode listener on the helper's port, so it can tell mitmdump listens
        self.proxy = Mitmdump(
            tmp_path, "--mode", "regular", *args, *[a for w in widths for a in ("--set", w)],
            "--set", f"flowexport_collectors=ipfix://127.0.0.1:{self.ipfix.port}",
            "--set", f"flowexport_collectors=netflow9://127.0.0.1:{self.netflow9.port}",
            "--set", "flowexport_flush_interval_ms=20")

    def wait_listening(self, *ports: int) -> None:
        """mitmdump starts its other modes' listeners after the regular one."""
        assert wait_until(lambda: all(f"listening at 127.0.0.1:{port}." in self.proxy.log()
                                      for port in ports)), self.proxy.log()

    def records(self, fmt: ExportFormat = ExportFormat.IPFIX) -> list[Record]:
        receiver = self.ipfix if fmt is ExportFormat.IPFIX else self.netflow9
        receiver.drain()
        return receiver.flows

    def wait_for(self, predicate: Callable[[Record], bool], count: int = 1,
                 timeout: float = 15.0) -> list[Record]:
        """The IPFIX records matching `predicate`, once there are `count` of them."""
        wait_until(lambda: len([r for r in self.records() if predicate(r)]) >= count, timeout)
        return [r for r in self.records() if predicate(r)]

    def stop(self) -> None:
        """mitmdump flushes everything on its way out."""
        # a loaded machine once took over 20 s to shut down with UDP clients still open
        code = self.proxy.stop(timeout=60)
        assert code == 0, f"mitmdump exited with {code}:\n{self.proxy.log()}"
        time.sleep(0.3)  # the last datagrams, sent on the way out, reach the sockets
        for receiver in (self.ipfix, self.netflow9):
            receiver.drain()

    def close(self) -> None:
        self.proxy.stop()
        self.ipfix.close()
        self.netflow9.close()

    def check_with_tshark(self, fmt: ExportFormat, chosen: Callable[[Record], bool]) -> int:
        """Every record of ours that `chosen` picks, as tshark decodes it from the same
        datagrams: the same IANA fields, and our enterprise fields byte for byte.
        Returns how many records were compared."""
        if shutil.which("tshark") is None:
            return 0
        receiver = self.ipfix if fmt is ExportFormat.IPFIX else self.netflow9
        capture = self.tmp_path / f"export-{fmt}.pcap"
        write_pcap(capture, receiver.raw)
        args = ("-r", str(capture), "-d", "udp.port==4739,cflow")
        assert tshark_problems(*args) == ""
        decoded = [f for f in flows(tshark_json(*args)) if "cflow.flow_id" in f]
        ours = [r for r in receiver.flows if chosen(r)]
        for record in ours:
            match = [f for f in decoded if f["cflow.flow_id"] == str(record["flowId"])
                     and _tshark_end(f) == tshark_time(record["flowEndMilliseconds"])]
            assert match, f"tshark has no record like {record}"
            _same_in_tshark(match[0], record, fmt, self.netflow9_widths)
        return len(ours)

    def check_with_pmacct(self, port: int, chosen: Callable[[Record], bool]) -> int:
        """Every IPFIX record `chosen` picks, as nfacctd with our shipped primitives reads
        it from the same datagrams. Returns how many records were compared."""
        if shutil.which("nfacctd") is None:
            return 0
        from tests.pmacct import replay

        rows = replay(self.tmp_path, port, ExportFormat.IPFIX, self.ipfix.raw)
        ours = [r for r in self.ipfix.flows if chosen(r)]
        for record in ours:
            expected = _as_pmacct(record)
            assert any(all(str(row.get(k)) == v for k, v in expected.items()) for row in rows), (
                f"nfacctd has no row like {expected}; it printed {rows}")
        return len(ours)


def _tshark_end(flow: dict[str, Any]) -> str:
    tree = flow["cflow.timedelta_tree"]
    for entry in tree if isinstance(tree, list) else [tree]:
        if "cflow.abstimeend" in entry:
            return str(entry["cflow.abstimeend"])
    return ""


def _same_in_tshark(flow: dict[str, Any], record: Record, fmt: ExportFormat,
                    widths: Mapping[str, int]) -> None:
    for name, key in TSHARK_KEYS.items():
        if name in record:
            assert flow[key] == str(record[name]), (name, flow[key], record[name])
    expected = [_raw(element, record[name], fmt, widths) for name, element in _elements(record)
                if element.is_enterprise]
    if fmt is ExportFormat.IPFIX:  # tshark leaves zero-length strings out
        expected = [raw for raw in expected if raw]
    got = flow.get("cflow.enterprise_private_entry" if fmt is ExportFormat.IPFIX
                   else "cflow.unknown_field_type", [])
    got = [got] if isinstance(got, str) else got
    assert got == [":".join(f"{b:02x}" for b in raw) for raw in expected], record


def _elements(record: Record) -> list[tuple[str, InformationElement]]:
    return [(name, DEFAULT_REGISTRY[name]) for name in record if name in DEFAULT_REGISTRY]


def _raw(element: InformationElement, value: Any, fmt: ExportFormat,
         widths: Mapping[str, int]) -> bytes:
    """The bytes of an enterprise field as sent (a v9 string padded to its width)."""
    if element.data_type is DataType.STRING:
        raw = str(value).encode()
        if fmt is ExportFormat.NETFLOW9:
            raw = raw.ljust(widths[element.name], b"\0")
        return raw
    return int(value).to_bytes(element.default_length, "big")


def _as_pmacct(record: Record) -> dict[str, str]:
    """What nfacctd's JSON line for `record` holds, as text."""
    expected = {}
    for name, _element in _elements(record):
        if name in PMACCT_SKIPPED:
            continue
        key = PMACCT_KEYS.get(name, snake_case(name))
        expected[key] = str(record[name])
    return expected
