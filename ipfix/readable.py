"""Flow records for people: one line per exchange, stream, query or failed handshake, and
a summary now and then.

    10:41:07.123  192.0.2.10:40000  GET shop.example /items/1?page=2  200  ↑234 B ↓1.2 kB
        40 ms  completed                                          (one line, wrapped here)
    10:41:08.002  192.0.2.10:40002  TCP stream -> 10.0.0.5:5432  ↑1.2 kB/4 ↓3.4 kB/5  2 s
        completed
    10:41:08.310  192.0.2.10:53111  DNS A shop.example  NOERROR  shop.example A 192.0.2.7
        (ttl 60)  3 ms  completed

JSON lines stay the collector's default for machines; this is what a person watching a
proxy wants to read, in colour on a terminal and plain when piped.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping

from .termination import FlowEndReason, Termination

KIND_NAMES = {1: "TCP stream", 2: "UDP stream", 3: "passthrough", 4: "TLS failure"}
DNS_TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
             33: "SRV", 64: "SVCB", 65: "HTTPS", 255: "ANY"}
_SHOWN_ANSWERS = 3  # a line for a person: the rest is in the record
DNS_CODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
             5: "REFUSED"}

Fields = Mapping[str, object]

_RESET = "\033[0m"
_STATUS_COLOURS = {2: "\033[32m", 3: "\033[36m", 4: "\033[33m", 5: "\033[31m"}
_NO_STATUS_COLOUR = "\033[35m"
_PROBLEM_COLOUR = "\033[31m"
_DIM = "\033[2m"


def is_http_record(fields: Fields) -> bool:
    return "httpRequestMethod" in fields or "httpStatusCode" in fields


def size(octets: int) -> str:
    """1234 -> '1.2 kB': bytes as a person reads them."""
    if octets < 1000:
        return f"{octets} B"
    value = octets / 1000
    for unit in ("kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def is_readable_record(fields: Fields) -> bool:
    """A flow record of ours that `line` can show (HTTP, connection or DNS)."""
    return (is_http_record(fields) or "proxyFlowKind" in fields
            or "dnsTransactionId" in fields)


def ending(fields: Fields) -> str:
    """How the flow ended, in words."""
    reason = fields.get("flowEndReason")
    code = fields.get("httpTerminationStateCode", fields.get("flowTerminationStateCode", 0))
    try:
        words = Termination(int(code)).words  # type: ignore[call-overload]
    except (TypeError, ValueError):
        words = f"termination code {code}"
    if reason == FlowEndReason.ACTIVE_TIMEOUT:
        return f"interim ({words} so far)" if code else "interim, still open"
    return words


def duration_ms(fields: Fields) -> int | None:
    start, end = fields.get("flowStartMilliseconds"), fields.get("flowEndMilliseconds")
    if isinstance(start, int) and isinstance(end, int) and start and end >= start:
        return end - start
    return None


def client(fields: Fields) -> str:
    host = fields.get("sourceIPv4Address") or fields.get("sourceIPv6Address") or "?"
    port = fields.get("sourceTransportPort", 0)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _moment(fields: Fields) -> str:
    start = fields.get("flowStartMilliseconds")
    return (time.strftime("%H:%M:%S", time.localtime(start / 1000)) + f".{start % 1000:03d}"
            if isinstance(start, int) and start else "--:--:--.---")


def _number(fields: Fields, name: str) -> int:
    value = fields.get(name, 0)
    return value if isinstance(value, int) else 0


def _upstream(fields: Fields) -> str:
    host = (fields.get("postNATDestinationIPv4Address")
            or fields.get("postNATDestinationIPv6Address") or "")
    if host in ("", "0.0.0.0", "::"):
        return "-"
    port = _number(fields, "postNAPTDestinationTransportPort")
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def line(fields: Fields, *, colour: bool) -> str:
    """One line for one flow record of ours."""
    took = duration_ms(fields)
    took_text = f"{took} ms" if took is not None else "- ms"
    ended = ending(fields)
    moment = _moment(fields)
    problem = bool(fields.get("httpTerminationStateCode", 0)
                   or fields.get("flowTerminationStateCode", 0))
    if colour:
        moment = _DIM + moment + _RESET
        if problem:
            ended = _PROBLEM_COLOUR + ended + _RESET
    if "proxyFlowKind" in fields:
        middle = _connection(fields)
    elif "dnsTransactionId" in fields:
        middle = _dns(fields)
    else:
        middle = _http(fields, colour)
    if problem and fields.get("proxyErrorMessage"):
        ended = f"{ended}: {fields['proxyErrorMessage']}"
    return f"{moment}  {client(fields)}  {middle}  {took_text}  {ended}"


def _http(fields: Fields, colour: bool) -> str:
    status = _number(fields, "httpStatusCode")
    target = str(fields.get("httpRequestTarget", ""))
    query = fields.get("httpRequestQuery")
    if query:
        target = f"{target}?{query}"
    method = str(fields.get("httpRequestMethod", "") or "-")
    host = str(fields.get("httpRequestHost", "") or "-")
    up, down = _number(fields, "initiatorOctets"), _number(fields, "responderOctets")
    status_text = str(status) if status else "---"
    if colour:
        status_text = (_STATUS_COLOURS.get(status // 100, _NO_STATUS_COLOUR) + status_text
                       + _RESET)
    return f"{method} {host} {target}  {status_text}  \u2191{size(up)} \u2193{size(down)}"


def _connection(fields: Fields) -> str:
    kind_code = _number(fields, "proxyFlowKind")
    kind = KIND_NAMES.get(kind_code, f"kind {kind_code}")
    sni = str(fields.get("tlsServerName", "") or "")
    text = f"{kind} {sni + ' ' if sni else ''}-> {_upstream(fields)}"
    tls = " ".join(str(fields.get(name, "") or "") for name in (
        "tlsApplicationProtocol", "tlsProtocolVersion") if fields.get(name))
    offers = " ".join(str(fields.get(name, "") or "") for name in (
        "tlsOfferedApplicationProtocols", "tlsOfferedVersion") if fields.get(name))
    if tls:
        text += f"  {tls}"
    elif offers:
        text += f"  offered {offers}"
    if kind_code in (1, 2):  # streams: octets and messages each way
        text += (f"  \u2191{size(_number(fields, 'initiatorOctets'))}"
                 f"/{_number(fields, 'initiatorMessages')}"
                 f" \u2193{size(_number(fields, 'responderOctets'))}"
                 f"/{_number(fields, 'responderMessages')}")
    return text


def _dns(fields: Fields) -> str:
    query_type = _number(fields, "dnsQueryType")
    name = str(fields.get("dnsQueryName", "") or "-")
    type_name = DNS_TYPES.get(query_type, f"TYPE{query_type}") if query_type else "-"
    text = f"DNS {type_name} {name}"
    if fields.get("dnsFlags", 0) or fields.get("dnsAnswerCount", 0):
        code = _number(fields, "dnsResponseCode")
        text += f"  {DNS_CODES.get(code, f'RCODE{code}')}"
        answers = str(fields.get("dnsAnswers", "") or "")
        if answers:
            shown = answers.split("; ")
            count = max(_number(fields, "dnsAnswerCount"), len(shown))
            more = f" and {count - _SHOWN_ANSWERS} more" if count > _SHOWN_ANSWERS else ""
            text += (f"  {'; '.join(shown[:_SHOWN_ANSWERS])}{more} "
                     f"(ttl {_number(fields, 'dnsMinimumTtl')})")
        if _number(fields, "dnsFlags") & 0x0200:
            text += "  truncated (TC)"
    return text


def percentile(sorted_values: list[int], fraction: float) -> int:
    """The value below which `fraction` of them lie (nearest rank)."""
    rank = max(math.ceil(fraction * len(sorted_values)), 1)
    return sorted_values[rank - 1]


class Summary:
    """What the records of an interval add up to: rates, status classes, top hosts,
    duration percentiles, and records lost by sequence numbers."""

    def __init__(self, top: int = 5) -> None:
        self.top = top
        self.reset()

    def reset(self) -> None:
        self.exchanges = 0
        self.others: Counter[str] = Counter()  # records of the other kinds, by kind
        self.classes: Counter[str] = Counter()
        self.hosts: Counter[str] = Counter()
        self.durations: list[int] = []
        self.problems = 0

    def add(self, fields: Fields) -> None:
        if fields.get("flowEndReason") == FlowEndReason.ACTIVE_TIMEOUT:
            return  # an interim record: the exchange counts once, at its end
        if not is_http_record(fields):
            if "dnsTransactionId" in fields:
                self.others["DNS"] += 1
            elif "proxyFlowKind" in fields:
                kind = _number(fields, "proxyFlowKind")
                self.others[KIND_NAMES.get(kind, f"kind {kind}")] += 1
            if fields.get("flowTerminationStateCode", 0):
                self.problems += 1
            return
        self.exchanges += 1
        status = int(fields.get("httpStatusCode", 0) or 0)  # type: ignore[call-overload]
        self.classes[f"{status // 100}xx" if status else "none"] += 1
        self.hosts[str(fields.get("httpRequestHost", "") or "-")] += 1
        took = duration_ms(fields)
        if took is not None:
            self.durations.append(took)
        if fields.get("httpTerminationStateCode", 0):
            self.problems += 1

    def render(self, seconds: float, lost: int) -> str:
        """The summary of what was added over the last `seconds`, then a fresh start."""
        rate = self.exchanges / seconds if seconds > 0 else 0.0
        classes = " ".join(f"{name} {count}" for name, count in sorted(self.classes.items()))
        hosts = ", ".join(f"{host} {count}" for host, count in self.hosts.most_common(self.top))
        durations = sorted(self.durations)
        timing = (f"p50 {percentile(durations, 0.5)} ms, p99 {percentile(durations, 0.99)} ms"
                  if durations else "no durations")
        others = "".join(f"; {name} {count}" for name, count in sorted(self.others.items()))
        text = (f"-- {seconds:.0f} s: {self.exchanges} exchanges ({rate:.1f}/s); "
                f"status {classes or 'none'}{others}; not completed {self.problems}; "
                f"{timing}; top hosts: {hosts or 'none'}; lost by sequence numbers: {lost}")
        self.reset()
        return text
