"""flowexport's mitmproxy options: declared in `load`, parsed once per change in
`configure` into `Settings`, since reading `ctx.options` deep-copies a value each time.

A bad value raises OptionsError quoting it, which stops mitmdump at start.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mitmproxy import exceptions, flowfilter
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import mode_specs

from ipfix.connection_record import CONNECTION_RECORDS
from ipfix.destinations import DEFAULT_COLLECTOR, CollectorKind, CollectorSpec, parse_collector
from ipfix.dns_record import DNS_RECORDS
from ipfix.exporter import Exporter
from ipfix.http_record import HTTP_RECORDS
from ipfix.ie import DEFAULT_ENTERPRISE_NUMBER
from ipfix.layout import RecordLayout
from ipfix.records import DEFAULT_MAX_LENGTHS, DEFAULT_V9_WIDTHS, STRING_ELEMENTS
from ipfix.session import ExportFormat, SessionConfig

from .facts import RecordRules
from .hello import Limits
from .privacy import COOKIE_MODES, DEFAULT_REDACTED, Redactor

logger = logging.getLogger(__name__)

# mitmproxy options that change what flowexport does
MITMPROXY_OPTIONS = frozenset(("tcp_timeout", "mode", "keep_host_header", "stream_large_bodies",
                               "ignore_hosts", "allow_hosts"))
# the kinds of flows that can become records; the record kind each is exported as
KINDS: dict[str, RecordLayout] = {
    "http": HTTP_RECORDS, "tcp": CONNECTION_RECORDS, "udp": CONNECTION_RECORDS,
    "dns": DNS_RECORDS, "tls-failures": CONNECTION_RECORDS, "passthrough": CONNECTION_RECORDS}


@dataclass(frozen=True)
class Settings:
    """Every option, parsed and checked."""

    collectors: tuple[CollectorSpec, ...]
    session: SessionConfig
    queue_size: int
    active_timeout_ms: int
    sampling: int
    flow_filter: flowfilter.TFilter | None
    rules: RecordRules
    tcp_timeout_ms: int
    count_streams: bool  # bodies may be streamed: count them as they pass
    every_flow: bool  # no sampling, no filter, HTTP exported: every HTTP flow is a record
    kinds: frozenset[str]  # of KINDS
    hello_limits: Limits  # bytes of text every collector's records carry
    answers_limit: int
    watch_passthrough: bool  # ignore_hosts or allow_hosts set: connections may pass untouched

    @property
    def layouts(self) -> list[RecordLayout]:
        """The record kinds to announce templates for, in KINDS order, each once."""
        return list(dict.fromkeys(KINDS[kind] for kind in KINDS if kind in self.kinds))

    def wants(self, flow: Any) -> bool:
        """Whether a flow becomes records: 1 in `sampling` by flow id (so interim and final
        records of a flow agree), and matching the filter."""
        if flow.type not in self.kinds:  # "http", "tcp", "udp", "dns"
            return False
        if self.sampling > 1 and int(flow.id[:8], 16) % self.sampling:
            return False
        return self.flow_filter is None or bool(self.flow_filter(flow))

    def wants_connection(self, connection_id: str) -> bool:
        """Whether a record of a connection with no flow (passthrough, TLS failure) is
        made: sampled by its id like flows; the filter has no flow to match."""
        return self.sampling <= 1 or not int(connection_id[:8], 16) % self.sampling


def declare(loader: Loader) -> None:
    add = loader.add_option
    add("flowexport_collectors", Sequence[str], [DEFAULT_COLLECTOR],
        "Where to export: HOST:PORT or ipfix://HOST:PORT (IPFIX over UDP), "
        "netflow9://HOST:PORT (NetFlow v9 over UDP), file:PATH (an IPFIX file). "
        "IPv6 hosts in brackets. Repeat for several.")
    add("flowexport_observation_domain_id", int, 1,
        "IPFIX observation domain id (NetFlow v9 source id); distinct per proxy process.")
    add("flowexport_enterprise_number", int, DEFAULT_ENTERPRISE_NUMBER,
        "Enterprise number of the HTTP elements that IANA does not define.")
    add("flowexport_max_datagram", int, 1400, "Largest datagram sent, in bytes.")
    add("flowexport_flush_interval_ms", int, 200,
        "Longest a record waits for a datagram to fill up.")
    add("flowexport_queue_size", int, 16384,
        "Records waiting for export; beyond this they are dropped and counted.")
    add("flowexport_template_refresh_s", int, 30, "Re-send templates this often.")
    add("flowexport_template_refresh_messages", int, 100,
        "Also re-send templates after this many messages.")
    add("flowexport_statistics_interval_s", int, 60,
        "Log a statistics line and export statistics records this often.")
    add("flowexport_active_timeout_s", int, 60,
        "Export interim records of WebSocket and streamed exchanges this often.")
    add("flowexport_kinds", Sequence[str], list(KINDS),
        "The kinds of flows that become records: " + ", ".join(KINDS) + " (repeat; "
        "default: all).")
    add("flowexport_filter", str, "",
        "mitmproxy filter expression: export only the flows it matches (HTTP, TCP, UDP "
        "and DNS flows; passthrough and TLS failure records have no flow to match).")
    add("flowexport_sampling", int, 1, "Export one flow in N (1: every flow).")
    add("flowexport_max_lengths", Sequence[str], [],
        "Per-field limits in bytes, as ELEMENT=N (e.g. httpRequestTarget=2048).")
    add("flowexport_netflow9_widths", Sequence[str], [],
        "Fixed NetFlow v9 string widths, as ELEMENT=N (e.g. httpRequestHost=96).")
    add("flowexport_netflow9_private_fields", bool, True,
        "Send our enterprise elements in NetFlow v9 as field types 32768+id "
        "(some decoders misread types above 32767).")
    add("flowexport_netflow9_private_base", int, 32768,
        "NetFlow v9 field type of enterprise element 0.")
    add("flowexport_count_streams", bool, False,
        "Count streamed bodies as they pass also without stream_large_bodies (for addons "
        "that set .stream themselves); costs two hook calls per request.")
    add("flowexport_cookies", str, "off", "Cookie export: off, names, hashed or full.")
    add("flowexport_hash_key", str, "",
        "Key of the HMAC-SHA256 used for hashed cookies (set your own secret).")
    add("flowexport_redact_query", Sequence[str], list(DEFAULT_REDACTED),
        "Sensitive parameter names: values of query (and Referer query) parameters "
        "whose name, or a word of it, is one of these become REDACTED. Setting it "
        "replaces the default list.")
    add("flowexport_redact_query_add", Sequence[str], [],
        "More sensitive parameter names, added to flowexport_redact_query.")
    add("flowexport_redact_values", Sequence[str], [],
        "Regular expressions of values to redact whatever the parameter's name "
        "(JWTs always are).")


def _ours(options: Any) -> list[str]:
    names = options.keys()  # Options has keys() but is no iterable
    return sorted(name for name in names if name.startswith("flowexport_"))


def unknown_names(options: Any) -> list[str]:
    """flowexport_* names given (--set, config.yaml) that no option of ours has: mitmproxy
    keeps them aside in case an addon declares them later, and says nothing."""
    ours = set(_ours(options))
    return sorted(name for name in options.deferred
                  if name.startswith("flowexport_") and name not in ours)


def check_unknown(options: Any) -> None:
    """OptionsError naming each unknown flowexport_* option, with the likely one meant."""
    unknown = unknown_names(options)
    if not unknown:
        return
    ours = _ours(options)
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(name, ours, n=1)
        problems.append(f"{name}" + (f" (did you mean {close[0]}?)" if close else ""))
    raise exceptions.OptionsError(f"unknown option {', '.join(problems)}")


def concerns_us(updated: set[str]) -> bool:
    return any(name.startswith("flowexport_") or name in MITMPROXY_OPTIONS
               for name in updated)


# options whose values must be at least 1
_POSITIVE = ("flowexport_max_datagram", "flowexport_flush_interval_ms",
             "flowexport_queue_size", "flowexport_template_refresh_s",
             "flowexport_template_refresh_messages", "flowexport_statistics_interval_s",
             "flowexport_active_timeout_s", "flowexport_sampling")


def parse(options: Any) -> Settings:
    """Settings from mitmproxy's options; OptionsError quoting the first bad value."""
    try:
        collectors = tuple(parse_collector(c) for c in options.flowexport_collectors)
    except ValueError as exc:
        raise exceptions.OptionsError(f"flowexport_collectors: {exc}") from None
    if not collectors:
        raise exceptions.OptionsError("flowexport_collectors: give at least one collector")
    for spec in collectors:
        if spec.kind is CollectorKind.FILE:
            try:  # refused now rather than every record lost later
                Path(spec.path).open("ab").close()
            except OSError as exc:
                raise exceptions.OptionsError(
                    f"flowexport_collectors: {spec}: cannot write: {exc.strerror}") from None
    cookies = options.flowexport_cookies
    if cookies not in COOKIE_MODES:
        raise exceptions.OptionsError(
            f"flowexport_cookies: {cookies!r} is not one of {', '.join(COOKIE_MODES)}")
    try:
        redactor = Redactor([*options.flowexport_redact_query,
                             *options.flowexport_redact_query_add],
                            options.flowexport_redact_values)
    except re.error as exc:
        raise exceptions.OptionsError(
            f"flowexport_redact_values: {exc.pattern!r}: {exc}") from None
    kinds = frozenset(options.flowexport_kinds)
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise exceptions.OptionsError(
            f"flowexport_kinds: {', '.join(map(repr, unknown))} not among {', '.join(KINDS)}")
    if not kinds:
        raise exceptions.OptionsError("flowexport_kinds: give at least one kind")
    flow_filter = None
    if options.flowexport_filter:
        try:
            flow_filter = flowfilter.parse(options.flowexport_filter)
        except ValueError as exc:
            raise exceptions.OptionsError(
                f"flowexport_filter: {options.flowexport_filter!r}: {exc}") from None
    for name in _POSITIVE:
        if getattr(options, name) < 1:
            raise exceptions.OptionsError(f"{name}: {getattr(options, name)!r} must be at least 1")
    try:
        session = SessionConfig(
            observation_domain_id=options.flowexport_observation_domain_id,
            enterprise_number=options.flowexport_enterprise_number,
            max_message_size=options.flowexport_max_datagram,
            flush_interval_ms=options.flowexport_flush_interval_ms,
            template_refresh_ms=options.flowexport_template_refresh_s * 1000,
            template_refresh_messages=options.flowexport_template_refresh_messages,
            statistics_interval_ms=options.flowexport_statistics_interval_s * 1000,
            max_lengths=string_lengths("flowexport_max_lengths",
                                       options.flowexport_max_lengths),
            netflow9_widths=string_lengths("flowexport_netflow9_widths",
                                           options.flowexport_netflow9_widths),
            netflow9_private_base=options.flowexport_netflow9_private_base,
            netflow9_enterprise_fields=options.flowexport_netflow9_private_fields,
            sampling_interval=options.flowexport_sampling)
        layouts = list(dict.fromkeys(KINDS[kind] for kind in KINDS if kind in kinds))
        for spec in collectors:  # builds templates: refuses sizes and widths that cannot work
            Exporter([spec], session, layouts)
    except ValueError as exc:
        raise exceptions.OptionsError(f"flowexport: {exc}") from None
    reverse = any(isinstance(mode_specs.ProxyMode.parse(m), mode_specs.ReverseMode)
                  for m in options.mode)
    if reverse and not options.keep_host_header:
        logger.info("flowexport: reverse mode rewrites Host before addons see it; "
                    "httpRequestHost shows the TLS SNI if there is one, else the upstream. "
                    "Set keep_host_header=true to export the Host the client sent.")
    return Settings(
        collectors=collectors, session=session, queue_size=options.flowexport_queue_size,
        active_timeout_ms=options.flowexport_active_timeout_s * 1000,
        sampling=options.flowexport_sampling, flow_filter=flow_filter,
        rules=RecordRules(cookies=cookies, hash_key=options.flowexport_hash_key.encode(),
                          redactor=redactor, reverse_without_host=reverse
                          and not options.keep_host_header),
        tcp_timeout_ms=options.tcp_timeout * 1000,
        # stream_large_bodies is an option of mitmproxy's proxy server addon: absent where
        # that is not loaded
        count_streams=bool(options.flowexport_count_streams
                           or getattr(options, "stream_large_bodies", None)),
        every_flow=(options.flowexport_sampling == 1 and flow_filter is None
                    and "http" in kinds),
        kinds=kinds, hello_limits=Limits(server_name=text_limit(session, collectors,
                                                                "tlsServerName"),
                                         alpn_offers=text_limit(session, collectors,
                                                                "tlsOfferedApplicationProtocols")),
        answers_limit=text_limit(session, collectors, "dnsAnswers"),
        watch_passthrough=bool(options.ignore_hosts or options.allow_hosts))


def text_limit(session: SessionConfig, collectors: Sequence[CollectorSpec], element: str) -> int:
    """Bytes of `element` that reach every collector: the IPFIX limit, or a NetFlow v9
    width less its NUL byte where that is smaller. Lists (answers, ALPN offers) are cut
    to this between items, so no collector sees half an item."""
    limit = session.max_lengths.get(element, DEFAULT_MAX_LENGTHS[element])
    if any(spec.format is ExportFormat.NETFLOW9 for spec in collectors):
        width = session.netflow9_widths.get(element, DEFAULT_V9_WIDTHS[element])
        limit = min(limit, width - 1)
    return limit


def string_lengths(option: str, entries: Sequence[str]) -> dict[str, int]:
    """ELEMENT=N entries, for string elements of the records, as a dict; OptionsError for
    anything else (a misspelt element would otherwise be ignored)."""
    out = {}
    for entry in entries:
        name, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not value.isdigit() or int(value) <= 0:
            raise exceptions.OptionsError(f"{option}: expected ELEMENT=N, got {entry!r}")
        if name not in STRING_ELEMENTS:
            close = difflib.get_close_matches(name, sorted(STRING_ELEMENTS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise exceptions.OptionsError(f"{option}: {name!r} is no string element of the "
                                          f"records{hint}")
        out[name] = int(value)
    return out
