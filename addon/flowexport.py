"""flowexport: one IPFIX / NetFlow v9 flow record per HTTP exchange, from inside mitmproxy.

    mitmdump -s addon/flowexport.py --set flowexport_collectors=127.0.0.1:4739

Hooks note the flows that end; one turn of the event loop later each becomes an
`HttpFlowRecord` (read into `FlowFacts`, built by ipfix.facts) in a bounded queue, and a
background task (ipfix.exporter) encodes and sends them in batches. Nothing here blocks
the proxy or raises into it because of export.

(No `from __future__ import annotations` here: mitmproxy loads scripts without
registering them in sys.modules, and dataclasses then cannot resolve strings.)
"""


import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mitmproxy import ctx, exceptions, flowfilter, http
from mitmproxy.addonmanager import Loader
from mitmproxy.flow import Error
from mitmproxy.proxy import mode_specs, server_hooks

from ipfix.destinations import DEFAULT_COLLECTOR, CollectorSpec, parse_collector
from ipfix.exporter import Exporter
from ipfix.facts import (
    END_ACTIVE_TIMEOUT,
    END_FORCED,
    FlowFacts,
    RecordRules,
    Termination,
    endpoint,
    flow_id_of,
    ms,
    record_from_facts,
)
from ipfix.http_record import DEFAULT_MAX_LENGTHS, DEFAULT_V9_WIDTHS, HTTP_RECORDS, HttpFlowRecord
from ipfix.ie import DEFAULT_ENTERPRISE_NUMBER
from ipfix.privacy import COOKIE_MODES, DEFAULT_REDACTED, Redactor
from ipfix.session import SessionConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """Options parsed once in `configure`: reading ctx.options per flow deep-copies."""

    collectors: tuple[CollectorSpec, ...]
    session: SessionConfig
    queue_size: int
    active_timeout_ms: int
    sampling: int
    flow_filter: flowfilter.TFilter | None
    rules: RecordRules
    tcp_timeout_ms: int
    streams_bodies: bool  # stream_large_bodies is set: mitmproxy may stream bodies


@dataclass
class _LongLived:
    """A WebSocket or streamed exchange: exported at every active timeout, then at its end."""

    flow: http.HTTPFlow
    last_export_ms: int
    uploaded: int = 0  # body / message bytes so far
    downloaded: int = 0
    exported_up: int = 0  # what earlier records already counted
    exported_down: int = 0
    head_exported: bool = False
    counts_request: bool = False  # our counter wraps the request's / response's stream
    counts_response: bool = False


def flow_facts(flow: http.HTTPFlow, now_ms: int) -> FlowFacts:
    """The facts of an HTTP exchange as it stands now (reads the flow only)."""
    data = flow.request.data
    client = flow.client_conn
    response = flow.response
    answer: tuple[Any, ...] = (None,)  # no status code: the other response facts stay empty
    if response is not None:
        rdata = response.data
        answer = (rdata.status_code, rdata.reason, rdata.http_version, rdata.headers.fields,
                  len(rdata.content) if rdata.content is not None else 0,
                  rdata.timestamp_start, rdata.timestamp_end)
    return FlowFacts(  # positional: storing attributes afterwards costs as much again
        flow.id, now_ms, data.timestamp_start, data.timestamp_end, data.method, data.path,
        data.http_version, data.authority, data.host, data.headers.fields,
        len(data.content) if data.content is not None else 0,
        client.peername, client.sockname, flow.server_conn.peername, client.sni,
        client.tls_version, *answer)


def record_from_flow(flow: http.HTTPFlow, settings: Settings, now_ms: int) -> HttpFlowRecord:
    """The record of an HTTP exchange as it stands now (pure: reads the flow only)."""
    return record_from_facts(flow_facts(flow, now_ms), settings.rules)


def termination_of(flow: http.HTTPFlow, error: Error | None, now_ms: int,
                   tcp_timeout_ms: int) -> int:
    """How an exchange ended, from the error mitmproxy recorded and the connection state."""
    if error is None:
        return Termination.COMPLETED
    message = error.msg
    if message == Error.KILLED_MESSAGE:
        return Termination.KILLED_BY_PROXY
    if "body_size_limit" in message:
        return (Termination.REJECTED_BY_PROXY if message.startswith("Request")
                else Termination.KILLED_BY_PROXY)
    if ("from client, refusing" in message or message.startswith("Invalid request")
            or "HTTP CONNECT request even though" in message
            or "no host header" in message):
        return Termination.REJECTED_BY_PROXY
    if message == "Client disconnected.":
        # the same words for a client that went away and for mitmproxy closing an idle
        # connection (tcp_timeout) while the upstream kept silent
        started = ms(flow.request.timestamp_end or flow.request.timestamp_start)
        if flow.response is None and started and now_ms - started >= tcp_timeout_ms - 1000:
            return Termination.UPSTREAM_TIMEOUT
        return Termination.CLIENT_ABORTED
    server = flow.server_conn
    if server.peername is None or (server.tls and not server.timestamp_tls_setup):
        return Termination.UPSTREAM_CONNECT_FAILED
    if "from server, refusing" in message or server.timestamp_start:
        return Termination.UPSTREAM_ABORTED
    return Termination.PROXY_ERROR


class FlowExport:
    """The addon: options, hooks, and the hand-over to the exporter."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.exporter: Exporter | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._long: dict[str, _LongLived] = {}
        # connect failures of clients with no flow yet, by connection id: see server_connect_error
        self._connect_failures: dict[str, HttpFlowRecord] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # set while the proxy runs
        self._held: list[http.HTTPFlow] = []  # completed in this loop turn
        self._warned_uncounted = False
        self._every_flow = False  # configured, with no sampling and no filter
        self._saw_streamed = [False, False]  # a request / response passed uncounted: count
        # the script module's namespace, where mitmproxy looks up hooks for every event
        self.hook_table: dict[str, Any] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def load(self, loader: Loader) -> None:
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
        add("flowexport_filter", str, "",
            "mitmproxy filter expression: export only the flows it matches.")
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

    def configure(self, updated: set[str]) -> None:
        if self.settings is not None and not any(
                name.startswith("flowexport_") or name in ("tcp_timeout", "mode",
                                                           "keep_host_header",
                                                           "stream_large_bodies")
                for name in updated):
            return
        settings = self._parse_options()
        previous, self.settings = self.settings, settings
        self._every_flow = settings.sampling == 1 and settings.flow_filter is None
        self._bind_stream_counters()
        if self.exporter is None:
            self._start_exporter()  # queues from now on; the task starts in `running`
        elif previous is not None and (
                previous.collectors != settings.collectors or previous.session != settings.session
                or previous.queue_size != settings.queue_size):
            self._stop_exporter()  # new destinations or framing: a fresh exporter
            self._start_exporter()

    def running(self) -> None:
        """Proxy servers may accept connections before this: records wait in the queue."""
        self._loop = asyncio.get_running_loop()
        if self.exporter is not None and self._task is None:
            self._task = self.exporter.start()
        if self._timer is None:
            self._timer = self._loop.call_later(1.0, self._tick)

    def done(self) -> None:
        """Flush everything, synchronously; later records (flows failing at shutdown) still go."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._release()
        self._loop = None  # from now on every record goes to the exporter at once
        for entry in list(self._long.values()):  # still open: their end is forced
            self._export_final(entry.flow, entry.flow.error, forced=True)
        for record in self._connect_failures.values():
            self._submit(record)
        self._connect_failures.clear()
        if self.exporter is not None:
            self.exporter.close()
            logger.info(self.exporter.statistics_line())
        self._task = None

    # -- HTTP hooks -----------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.stream:
            self._count_stream(flow, request=True)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and flow.response.stream:
            self._count_stream(flow, request=False)

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None:
            self._export_final(flow, None)
        elif response.data.status_code == 101:
            self._track(flow)  # a WebSocket (or other upgrade): its end makes the record
        elif (self._every_flow and not self._long and self._loop is not None
              and not flow.request.stream and not response.stream):
            # the usual exchange, shortly (what _export_final decides for it)
            if not self._held:
                self._loop.call_soon(self._release)
            self._held.append(flow)
        else:
            self._export_final(flow, None)

    def error(self, flow: http.HTTPFlow) -> None:
        if self._connect_failures:  # a flow's own connect failed: its record tells
            self._connect_failures.pop(flow.client_conn.id, None)
        self._export_final(flow, flow.error)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        entry = self._long.get(flow.id)
        if entry is None or flow.websocket is None or not flow.websocket.messages:
            return
        message = flow.websocket.messages[-1]
        if message.from_client:
            entry.uploaded += len(message.content)
        else:
            entry.downloaded += len(message.content)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._export_final(flow, flow.error)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Eager connects (reverse mode, CONNECT) fail before any HTTP flow exists: record the
        attempt. A connect for a flow fails the same way, and mitmproxy then reports the
        flow's error, which makes the record instead: so this one waits for the client to
        go (mitmproxy closes it after a failed eager connect) and the error hook drops it.
        Knowing which clients have flows would take a hook on every request."""
        if self.settings is None:
            return
        client_host, client_port = endpoint(data.client.peername)
        proxy_host, proxy_port = endpoint(data.client.sockname)
        now = _now_ms()
        record = HttpFlowRecord(
            flow_id=flow_id_of(data.client.id),
            start_ms=ms(data.client.timestamp_start) or now, end_ms=now,
            client_address=client_host or "0.0.0.0",
            proxy_address=proxy_host or ("::" if ":" in client_host else "0.0.0.0"),
            client_port=client_port, proxy_port=proxy_port,
            flow_end_reason=END_FORCED, termination_state=Termination.UPSTREAM_CONNECT_FAILED,
            tls_server_name=data.client.sni or "", tls_version=data.client.tls_version or "")
        self._connect_failures[data.client.id] = record

    def client_disconnected(self, client: Any) -> None:
        if self._connect_failures:
            record = self._connect_failures.pop(client.id, None)
            if record is not None:
                self._submit(record)

    # -- internals ------------------------------------------------------------------------

    def _wanted(self, flow: http.HTTPFlow, settings: Settings) -> bool:
        if settings.sampling > 1 and int(flow.id[:8], 16) % settings.sampling:
            return False
        return settings.flow_filter is None or bool(settings.flow_filter(flow))

    def _export_final(self, flow: http.HTTPFlow, error: Error | None, *,
                      forced: bool = False) -> None:
        settings = self.settings
        entry = self._long.pop(flow.id, None) if self._long else None
        if settings is None or (entry is None and flow.websocket is not None
                                and flow.response is not None
                                and flow.response.status_code == 101):
            return  # the final record of this upgrade went out already
        if not self._wanted(flow, settings):
            return
        try:
            if flow.request.stream or (flow.response is not None and flow.response.stream):
                entry = self._streamed_past_counter(flow, entry)
        except Exception:  # a flow that cannot be read: _record_of logs and counts it
            pass
        if error is None and not forced and entry is None and self._loop is not None:
            # completed, as far as this hook knows: see `_release`
            if not self._held:
                self._loop.call_soon(self._release)
            self._held.append(flow)
            return
        record = self._record_of(flow, _now_ms(), error, forced, settings.rules)
        if record is None:
            return
        if entry is not None:
            self._apply_long_counters(record, entry)
        self._submit(record)

    def _release(self) -> None:
        """The flows that completed in the last turn of the event loop become records.

        Waiting one turn lets every other addon's hook run first: one may kill the flow,
        or the client may have gone meanwhile, and both show as `flow.error` now. The
        records are built right away, while the flows' data is still in the CPU's caches:
        building them in the exporter's batch instead, a tenth of a second later, cost the
        proxy 0.6-0.9% more CPU per request (tests/bench/proxy.py, side by side, two runs);
        holding the flows themselves until the batch cost 2%.
        """
        held, self._held = self._held, []
        exporter, settings = self.exporter, self.settings
        if exporter is None or settings is None:  # only before the first configure: none held
            return
        # one clock reading for all: a completed flow ends at its response's timestamp anyway
        rules, now = settings.rules, _now_ms()
        for flow in held:
            record = self._record_of(flow, now, flow.error, False, rules)
            if record is not None:
                exporter.submit(record)

    def _record_of(self, flow: http.HTTPFlow, now: int, error: Error | None, forced: bool,
                   rules: RecordRules) -> HttpFlowRecord | None:
        """The record of a flow that ended; None, logged and counted as lost, for a flow this
        code cannot read: one such flow must not cost the others, nor raise into mitmproxy."""
        try:
            facts = flow_facts(flow, now)
            if error is not None or forced:
                self._end(facts, flow, error, forced)
            return record_from_facts(facts, rules)
        except Exception:
            logger.exception(f"flowexport: cannot read flow {flow.id}")
            if self.exporter is not None:
                self.exporter.count_lost()
            return None

    def _end(self, facts: FlowFacts, flow: http.HTTPFlow, error: Error | None,
             forced: bool) -> None:
        """How the exchange ended, into its facts."""
        if error is not None and self.settings is not None:
            facts.termination_state = termination_of(flow, error, facts.now_ms,
                                                      self.settings.tcp_timeout_ms)
            facts.flow_end_reason = END_FORCED
        elif forced:
            facts.termination_state = Termination.PROXY_ERROR
            facts.flow_end_reason = END_FORCED

    def _submit(self, record: HttpFlowRecord) -> None:
        if self.exporter is not None:
            self.exporter.submit(record)

    def _track(self, flow: http.HTTPFlow) -> _LongLived:
        entry = self._long.get(flow.id)
        if entry is None:
            entry = self._long[flow.id] = _LongLived(flow, _now_ms())
        return entry

    def _streamed_past_counter(self, flow: http.HTTPFlow,
                               entry: _LongLived | None) -> _LongLived | None:
        """A body streamed without our counter: another addon set `.stream` where our hook
        did not see it, or mitmproxy began streaming a chunked body midway
        (stream_large_bodies). Nobody counted its bytes; Content-Length, where there is
        one, says how many. The other body of the exchange may have been counted (`entry`)."""
        counted = (entry is not None and entry.counts_request,
                   entry is not None and entry.counts_response)
        sizes = []
        for message, ours in zip((flow.request, flow.response), counted, strict=True):
            uncounted = (message is not None and not ours and bool(message.stream)
                         and message.raw_content is None)
            sizes.append(_declared_length(message) if uncounted else None)
        if sizes == [None, None]:
            return entry
        if not all(self._saw_streamed):
            for index, size in enumerate(sizes):  # an addon before ours may stream more
                self._saw_streamed[index] |= size is not None
            self._bind_stream_counters()
        if not self._warned_uncounted:
            self._warned_uncounted = True
            logger.warning("flowexport: a body was streamed past the addon's counter "
                           "(another addon set .stream where flowexport was not counting, "
                           "or mitmproxy began streaming a chunked body midway): its size "
                           "comes from Content-Length, 0 without one. Streams of that kind "
                           "(requests or responses) are counted from now on.")
        if entry is None:
            entry = _LongLived(flow, 0)
        entry.uploaded += sizes[0] or 0
        entry.downloaded += sizes[1] or 0
        return entry

    def _bind_stream_counters(self) -> None:
        """Bind `requestheaders` and `responseheaders` only while bodies may be streamed:
        mitmproxy calling a hook costs ~11,000 instructions per request even when it does
        nothing (an eighth of what the exporter costs the proxy), and without streaming
        they have nothing to do. A body streamed while they are unbound is still sized
        (`_streamed_past_counter`), and binds its hook from then on."""
        if self.hook_table is None:
            return
        streams = self.settings is not None and self.settings.streams_bodies
        for name, saw in zip(("requestheaders", "responseheaders"), self._saw_streamed,
                             strict=True):
            if streams or saw:
                self.hook_table[name] = getattr(self, name)
            else:
                self.hook_table.pop(name, None)

    def _count_stream(self, flow: http.HTTPFlow, *, request: bool) -> None:
        entry = self._track(flow)
        message = flow.request if request else flow.response
        assert message is not None
        inner = message.stream
        if request:
            entry.counts_request = True
        else:
            entry.counts_response = True

        def count(chunk: bytes) -> Any:
            if request:
                entry.uploaded += len(chunk)
            else:
                entry.downloaded += len(chunk)
            return inner(chunk) if callable(inner) else chunk

        message.stream = count

    @staticmethod
    def _apply_long_counters(record: HttpFlowRecord, entry: _LongLived) -> None:
        """Counters of a long-lived exchange are deltas: bytes since its previous record."""
        request_head = record.initiator_octets - record.uploaded_bytes
        response_head = record.responder_octets - record.downloaded_bytes
        up = record.uploaded_bytes + entry.uploaded - entry.exported_up
        down = record.downloaded_bytes + entry.downloaded - entry.exported_down
        first = not entry.head_exported
        record.uploaded_bytes, record.downloaded_bytes = up, down
        record.initiator_octets = up + (request_head if first else 0)
        record.responder_octets = down + (response_head if first else 0)
        record.octets = record.initiator_octets + record.responder_octets
        entry.exported_up += up
        entry.exported_down += down
        entry.head_exported = True

    def _tick(self) -> None:
        """Interim records of long-lived exchanges; re-arms itself every second."""
        self._timer = None
        settings = self.settings
        if settings is None or self.exporter is None:
            return
        now = _now_ms()
        try:
            for entry in list(self._long.values()):
                if now - entry.last_export_ms < settings.active_timeout_ms:
                    continue
                entry.last_export_ms = now
                if not self._wanted(entry.flow, settings):
                    continue
                record = record_from_flow(entry.flow, settings, now)
                self._apply_long_counters(record, entry)
                record.flow_end_reason = END_ACTIVE_TIMEOUT
                record.end_ms = now
                self._submit(record)
        finally:
            self._timer = asyncio.get_running_loop().call_later(1.0, self._tick)

    def _start_exporter(self) -> None:
        settings = self.settings
        if settings is None:
            return
        self.exporter = Exporter(settings.collectors, settings.session, [HTTP_RECORDS],
                                 queue_size=settings.queue_size)
        if self._task is not None:  # re-configured while running: start right away
            self._task = self.exporter.start()

    def _stop_exporter(self) -> None:
        """Flush and close the current exporter; `_task` stays set if one was running."""
        if self.exporter is not None:
            self.exporter.close()
        self.exporter = None

    def _parse_options(self) -> Settings:
        options = ctx.options
        try:
            collectors = tuple(parse_collector(c) for c in options.flowexport_collectors)
        except ValueError as exc:
            raise exceptions.OptionsError(f"flowexport_collectors: {exc}") from None
        if not collectors:
            raise exceptions.OptionsError("flowexport_collectors: give at least one collector")
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
        flow_filter = None
        if options.flowexport_filter:
            try:
                flow_filter = flowfilter.parse(options.flowexport_filter)
            except ValueError as exc:
                raise exceptions.OptionsError(
                    f"flowexport_filter: {options.flowexport_filter!r}: {exc}") from None
        positive = {"flowexport_max_datagram": 1, "flowexport_flush_interval_ms": 1,
                    "flowexport_queue_size": 1, "flowexport_template_refresh_s": 1,
                    "flowexport_template_refresh_messages": 1,
                    "flowexport_statistics_interval_s": 1, "flowexport_active_timeout_s": 1,
                    "flowexport_sampling": 1}
        for name, minimum in positive.items():
            if getattr(options, name) < minimum:
                raise exceptions.OptionsError(
                    f"{name}: {getattr(options, name)!r} must be at least {minimum}")
        max_lengths = dict(DEFAULT_MAX_LENGTHS)
        max_lengths.update(_name_values("flowexport_max_lengths", options.flowexport_max_lengths))
        widths = dict(DEFAULT_V9_WIDTHS)
        widths.update(_name_values("flowexport_netflow9_widths",
                                   options.flowexport_netflow9_widths))
        try:
            session = SessionConfig(
                observation_domain_id=options.flowexport_observation_domain_id,
                enterprise_number=options.flowexport_enterprise_number,
                max_message_size=options.flowexport_max_datagram,
                flush_interval_ms=options.flowexport_flush_interval_ms,
                template_refresh_ms=options.flowexport_template_refresh_s * 1000,
                template_refresh_messages=options.flowexport_template_refresh_messages,
                statistics_interval_ms=options.flowexport_statistics_interval_s * 1000,
                max_lengths=max_lengths, netflow9_widths=widths,
                netflow9_private_base=options.flowexport_netflow9_private_base,
                netflow9_enterprise_fields=options.flowexport_netflow9_private_fields,
                sampling_interval=options.flowexport_sampling)
            for spec in collectors:  # builds templates: refuses sizes and widths that cannot work
                Exporter([spec], session, [HTTP_RECORDS])
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
            rules=RecordRules(
                cookies=cookies, hash_key=options.flowexport_hash_key.encode(),
                redactor=redactor,
                reverse_without_host=reverse and not options.keep_host_header),
            tcp_timeout_ms=options.tcp_timeout * 1000,
            # an option of mitmproxy's proxy server addon: absent where that is not loaded
            streams_bodies=bool(getattr(options, "stream_large_bodies", None)))


def _name_values(option: str, entries: Sequence[str]) -> dict[str, int]:
    out = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not value.strip().isdigit() or int(value) <= 0:
            raise exceptions.OptionsError(f"{option}: expected ELEMENT=N, got {entry!r}")
        out[name.strip()] = int(value)
    return out


def _declared_length(message: http.Message | None) -> int:
    """Content-Length of a message, 0 when absent or not a number."""
    value = message.headers.get("content-length", "") if message is not None else ""
    return int(value) if value.isdigit() else 0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# mitmproxy asks each addon for each event of each flow and walks into every `addons`
# list to do so; hooks bound at module level spare that walk, about 27,000 of the
# instructions this addon costs per request (tests/bench/instructions.py: eight no-op
# hooks on an object in `addons` +59,000, the same as module functions +33,000).
_addon = FlowExport()
load = _addon.load
configure = _addon.configure
running = _addon.running
done = _addon.done
requestheaders = _addon.requestheaders  # these two: unbound while nothing can be streamed
responseheaders = _addon.responseheaders
response = _addon.response
error = _addon.error
websocket_message = _addon.websocket_message
websocket_end = _addon.websocket_end
server_connect_error = _addon.server_connect_error
client_disconnected = _addon.client_disconnected
_addon.hook_table = globals()
