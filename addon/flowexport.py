"""flowexport: IPFIX / NetFlow v9 flow records of what mitmproxy carries, from inside it:
HTTP exchanges, TCP and UDP streams, DNS queries, passthrough connections and failed TLS
handshakes.

    mitmdump -s addon/flowexport.py --set flowexport_collectors=127.0.0.1:4739

The glue between mitmproxy's hooks and the parts that do the work: `mitmflows` reads
flows and decides (options, facts, how a flow ended, long-lived flows, privacy), and
`ipfix.exporter` encodes and sends from a background task through a bounded queue.
Nothing here blocks the proxy, or raises into it, because of export.

The hooks are module functions bound to one FlowExport object (bottom of the file):
mitmproxy looks up every hook of every addon for every event, and for an object in an
`addons` list it walks into the list as well; module functions spare that walk.
"""

import asyncio
import contextlib
import logging
import sys
from typing import Any

from mitmproxy import ctx, dns, exceptions, http, tls
from mitmproxy.addonmanager import Loader
from mitmproxy.flow import Error
from mitmproxy.proxy import server_hooks

try:
    from ipfix.exporter import Exporter
    from ipfix.http_record import HttpFlowRecord
    from ipfix.termination import FlowEndReason, Termination
    from mitmflows import options
    from mitmflows.connect_failures import Record, connect_failure
    from mitmflows.convert import now_ms
    from mitmflows.dns import (
        NO_ANSWER,
        SHUT_DOWN,
        PendingQueries,
        dns_record,
        is_dns_connection,
        unparsed_connection_record,
    )
    from mitmflows.facts import read_http_flow, record_from_facts
    from mitmflows.hello import HelloFacts, hello_facts
    from mitmflows.longlived import LongLived, LongLivedFlows, StreamCounter
    from mitmflows.options import Settings
    from mitmflows.streams import OpenStreams, Stream, stream_record, stream_termination
    from mitmflows.termination import END_ACTIVE_TIMEOUT, END_FORCED, termination_of
    from mitmflows.tls import (
        Passthrough,
        PassthroughWatcher,
        passthrough_record,
        tls_failure_record,
    )
except ModuleNotFoundError as missing:
    package = (missing.name or "").partition(".")[0]
    if package not in ("ipfix", "mitmflows"):
        raise
    raise ModuleNotFoundError(
        f"flowexport: the {package!r} package is not installed in the Python that runs "
        f"this mitmdump ({sys.executable}). Run the mitmdump of flowexport's own "
        "environment (.venv/bin/mitmdump, after `make install` in the project), or install "
        f"flowexport into this one: {sys.executable} -m pip install /path/to/flowexport"
    ) from None

logger = logging.getLogger(__name__)


# how a stream ended, as flowEndReason (RFC 5102): the rest are forced ends
_STREAM_END_REASONS = {Termination.COMPLETED: FlowEndReason.END_OF_FLOW,
                       Termination.IDLE_TIMEOUT: FlowEndReason.IDLE_TIMEOUT}


class FlowExport:
    """The addon: options, hooks, and the hand-over to the exporter."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.exporter: Exporter | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set while the proxy runs
        self.long = LongLivedFlows()
        self._streams = StreamCounter(self.long, now_ms)
        self._streams_registered = False
        self._held: list[http.HTTPFlow] = []  # completed in this loop turn: see _release
        # connect failures of clients with no flow yet, by connection id: see
        # server_connect_error
        self._connect_failures: dict[str, tuple[str, Record]] = {}
        self.streams = OpenStreams()  # TCP and UDP streams
        self.queries = PendingQueries()  # DNS queries waiting for their answer
        self.hellos: dict[str, HelloFacts] = {}  # ClientHello offers, by client connection
        self.passthrough: dict[str, Passthrough] = {}  # connections relayed untouched
        self._passthrough_watcher = PassthroughWatcher(self._on_passthrough,
                                                       self._hello_limits)
        self._watching_passthrough = False

    # -- lifecycle ------------------------------------------------------------------------

    def load(self, loader: Loader) -> None:
        options.declare(loader)

    def configure(self, updated: set[str]) -> None:
        if self.settings is not None and not options.concerns_us(updated):
            return
        try:
            options.check_unknown(ctx.options)
            settings = options.parse(ctx.options)
        except exceptions.OptionsError as exc:
            if self.settings is None and self._loop is None:
                # at start: one line, no traceback, and mitmdump stops (it exits when an
                # error is logged during start-up)
                logger.error(f"flowexport: {exc}")
                return
            raise  # later (mitmweb, config.yaml reload): mitmproxy keeps the old value
        previous, self.settings = self.settings, settings
        self._register_stream_counter(self.settings.count_streams)
        self._watch_passthrough(settings.watch_passthrough and "passthrough" in settings.kinds)
        if self.exporter is None:
            self._start_exporter()  # queues from now on; the task starts in `running`
        elif previous is not None and (previous.collectors, previous.session,
                                       previous.queue_size, previous.layouts) != (
                settings.collectors, settings.session, settings.queue_size, settings.layouts):
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
        """Flush everything, synchronously (plain def: mitmproxy calls it so on reload);
        records of flows that fail during shutdown still go out."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._release()
        self._loop = None  # from now on every record goes to the exporter at once
        for entry in list(self.long.entries.values()):  # still open: their end is forced
            self._export_final(entry.flow, entry.flow.error, forced=True)
        for counts in list(self.streams.entries.values()):
            self._stream_final(counts.flow, forced=True)
        for client_id in list(self.queries.by_client):
            self._unanswered(self.queries.server_gone(client_id), Termination.PROXY_ERROR,
                             SHUT_DOWN)
        for relayed in list(self.passthrough.values()):
            self._passthrough_final(relayed, forced=True)
        self.passthrough.clear()
        for _, record in self._connect_failures.values():
            self._submit(record)
        self._connect_failures.clear()
        self._register_stream_counter(False)
        self._watch_passthrough(False)
        if self.exporter is not None:
            self.exporter.close()
            logger.info(self.exporter.statistics_line())
        self._task = None

    # -- hooks ----------------------------------------------------------------------------

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        settings = self.settings
        if response is None or settings is None:
            self._export_final(flow, None)
        elif response.data.status_code == 101:
            self.long.track(flow, now_ms())  # a WebSocket (or other upgrade): its end tells
        elif (settings.every_flow and not self.long.entries and self._loop is not None
              and not flow.request.stream and not response.stream):
            self._hold(flow)  # the usual exchange: what _export_final decides, in short
        else:
            self._export_final(flow, None)

    def error(self, flow: http.HTTPFlow) -> None:
        if self._connect_failures:  # a flow's own connect failed: its record tells
            self._connect_failures.pop(flow.client_conn.id, None)
        self._export_final(flow, flow.error)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        self.long.count_message(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._export_final(flow, flow.error)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Eager connects (reverse mode, CONNECT) fail before any flow exists: record the
        attempt. A connect for a flow fails the same way, and mitmproxy then reports the
        flow's error, which makes the record instead: so this one waits for the client to
        go (mitmproxy closes it after a failed eager connect) and the flow's error hook
        drops it."""
        settings = self.settings
        if settings is not None and settings.wants_connection(data.client.id):
            kind, record = connect_failure(data, now_ms())
            if kind in settings.kinds:
                self._connect_failures[data.client.id] = (kind, record)

    def client_disconnected(self, client: Any) -> None:
        failure = self._connect_failures.pop(client.id, None) if self._connect_failures else None
        if self.hellos:
            self.hellos.pop(client.id, None)
        if self.passthrough:
            entry = self.passthrough.pop(client.id, None)
            if entry is not None:
                self._passthrough_final(entry)
                return  # it tells of the failed connect too
        if failure is not None:
            self._submit(failure[1])
        if self.queries.by_client or (self.settings is not None and "dns" in self.settings.kinds
                                      and is_dns_connection(client)):
            self._dns_client_gone(client, quiet=failure is not None)

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        if self.queries.by_client:
            self._unanswered(self.queries.server_gone(data.client.id),
                             Termination.UPSTREAM_TIMEOUT, NO_ANSWER)

    # TCP and UDP streams: counted as their messages pass, a record at their end (and
    # interim ones in between, from _tick)

    def tcp_start(self, flow: Stream) -> None:
        self._stream_start(flow, "tcp")

    def udp_start(self, flow: Stream) -> None:
        self._stream_start(flow, "udp")

    def tcp_message(self, flow: Stream) -> None:
        self.streams.count_last_message(flow)

    def udp_message(self, flow: Stream) -> None:
        self.streams.count_last_message(flow)

    def tcp_end(self, flow: Stream) -> None:
        self._stream_final(flow)

    def tcp_error(self, flow: Stream) -> None:
        self._stream_final(flow)

    def udp_end(self, flow: Stream) -> None:
        self._stream_final(flow)

    def udp_error(self, flow: Stream) -> None:
        self._stream_final(flow)

    # DNS: a record per answer or error; queries left unanswered when their client goes

    def dns_request(self, flow: dns.DNSFlow) -> None:
        if self.settings is not None and "dns" in self.settings.kinds:
            self.queries.add(flow)

    def dns_response(self, flow: dns.DNSFlow) -> None:
        self._dns_final(flow)

    def dns_error(self, flow: dns.DNSFlow) -> None:
        self._dns_final(flow)

    # TLS below HTTP: what ClientHellos offer, and handshakes that failed

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        settings = self.settings
        if settings is not None and not settings.kinds <= {"http", "dns"}:
            self.hellos[data.context.client.id] = hello_facts(data.client_hello,
                                                              settings.hello_limits)

    def tls_failed_client(self, data: tls.TlsData) -> None:
        self._tls_failed(data)

    def tls_failed_server(self, data: tls.TlsData) -> None:
        self._tls_failed(data)

    # -- internals ------------------------------------------------------------------------

    def _export_final(self, flow: http.HTTPFlow, error: Error | None, *,
                      forced: bool = False) -> None:
        """The last record of a flow: now, or (completed, not long-lived) one loop turn
        later, in `_release`."""
        settings = self.settings
        entry = self.long.pop(flow.id) if self.long.entries else None
        if settings is None or (entry is None and flow.websocket is not None
                                and flow.response is not None
                                and flow.response.status_code == 101):
            return  # the final record of this upgrade went out already
        if not settings.every_flow and not settings.wants(flow):
            return
        try:
            streamed = bool(flow.request.stream
                            or (flow.response is not None and flow.response.stream))
        except Exception:  # a flow that cannot be read: _record_of logs and counts it
            streamed = False
        if streamed:
            entry = self.long.uncounted(flow, entry)
        if error is None and not forced and entry is None and self._loop is not None:
            self._hold(flow)
            return
        record = self._record_of(flow, now_ms(), error, forced)
        if record is not None:
            if entry is not None:
                entry.apply(record)
            self._submit(record)

    def _hold(self, flow: http.HTTPFlow) -> None:
        """Completed, as far as this hook knows: the record is made in `_release`."""
        assert self._loop is not None
        if not self._held:
            self._loop.call_soon(self._release)
        self._held.append(flow)

    def _release(self) -> None:
        """The flows that completed in the last turn of the event loop become records.

        Waiting one turn lets every other addon's hook run first: one may kill the flow,
        or the client may have gone meanwhile, and both show as `flow.error` now. The
        records are built now, not in the exporter's batch, while the flows' data is
        still in the CPU's caches.
        """
        held, self._held = self._held, []
        if self.exporter is None or self.settings is None:
            return  # only before the first configure, when nothing is held
        now = now_ms()  # a completed flow ends at its response's timestamp anyway
        for flow in held:
            record = self._record_of(flow, now, flow.error, False)
            if record is not None:
                self.exporter.submit(record)

    def _record_of(self, flow: http.HTTPFlow, now: int, error: Error | None,
                   forced: bool) -> HttpFlowRecord | None:
        """The record of a flow that ended; None, logged and counted as lost, for a flow
        this code cannot read: one such flow must not cost the others, nor raise into
        mitmproxy."""
        settings = self.settings
        assert settings is not None
        try:
            facts = read_http_flow(flow, now)
            if error is not None:
                facts.termination_state = termination_of(flow, error, now,
                                                          settings.tcp_timeout_ms)
                facts.flow_end_reason = END_FORCED
            elif forced:
                facts.termination_state = Termination.PROXY_ERROR
                facts.flow_end_reason = END_FORCED
            return record_from_facts(facts, settings.rules)
        except Exception:
            logger.exception(f"flowexport: cannot read flow {flow.id}")
            if self.exporter is not None:
                self.exporter.count_lost()
            return None

    def _submit(self, record: Record, cut_fields: int = 0) -> None:
        if self.exporter is not None:
            self.exporter.submit(record)
            if cut_fields:
                self.exporter.count_truncated(cut_fields)

    def _stream_start(self, flow: Stream, kind: str) -> None:
        settings = self.settings
        if settings is not None and kind in settings.kinds:
            counts = self.streams.start(flow, now_ms())
            counts.hello = self.hellos.get(flow.client_conn.id)

    def _stream_final(self, flow: Stream, *, forced: bool = False) -> None:
        """A stream's last record: the counts since its previous one, and how it ended."""
        counts = self.streams.pop(flow.id)
        settings = self.settings
        if self._connect_failures:  # its own record tells of the connect
            self._connect_failures.pop(flow.client_conn.id, None)
        if counts is None or settings is None or not settings.wants(flow):
            return
        now = now_ms()
        try:
            if forced:
                termination, reason = Termination.PROXY_ERROR, FlowEndReason.FORCED_END
            else:
                termination = stream_termination(flow, counts, now / 1000,
                                                 settings.tcp_timeout_ms // 1000)
                reason = _STREAM_END_REASONS.get(termination, FlowEndReason.FORCED_END)
            record = stream_record(flow, counts, counts.hello, now, termination, reason)
        except Exception:
            self._lost(flow.id)
            return
        self._submit(record, counts.hello.cuts if counts.hello is not None else 0)

    def _dns_final(self, flow: dns.DNSFlow) -> None:
        settings = self.settings
        if settings is None or "dns" not in settings.kinds:
            return
        self.queries.answered(flow)
        if self._connect_failures:
            self._connect_failures.pop(flow.client_conn.id, None)
        if settings.wants(flow):
            self._submit_dns(flow, None)

    def _submit_dns(self, flow: dns.DNSFlow, termination: Termination | None,
                    why: str = NO_ANSWER) -> None:
        settings = self.settings
        assert settings is not None
        try:
            record, cut = dns_record(flow, now_ms(), settings.answers_limit, termination, why)
        except Exception:
            self._lost(flow.id)
            return
        self._submit(record, 1 if cut else 0)  # one field, however many answers

    def _dns_client_gone(self, client: Any, *, quiet: bool) -> None:
        """Queries of a client that went unanswered; a DNS connection with no flow at all
        (nothing it sent parsed) unless its connect failure said enough (`quiet`)."""
        waiting, had_flows = self.queries.client_gone(client.id)
        settings = self.settings
        if settings is None:
            return
        self._unanswered(waiting, Termination.UPSTREAM_TIMEOUT, NO_ANSWER)
        if not had_flows and not quiet and is_dns_connection(client) and (
                settings.wants_connection(client.id)):
            self._submit(unparsed_connection_record(client, now_ms()))

    def _unanswered(self, waiting: list[dns.DNSFlow], termination: Termination,
                    why: str) -> None:
        for flow in waiting:
            if self.settings is not None and self.settings.wants(flow):
                self._submit_dns(flow, termination, why)

    def _tls_failed(self, data: tls.TlsData) -> None:
        settings = self.settings
        client = data.context.client
        if (settings is None or "tls-failures" not in settings.kinds
                or not settings.wants_connection(client.id)):
            return
        hello = self.hellos.get(client.id)
        try:
            record, cut_fields = tls_failure_record(data, hello, now_ms(),
                                                    settings.hello_limits)
        except Exception:
            self._lost(client.id)
            return
        self._submit(record, cut_fields)

    def _on_passthrough(self, entry: Passthrough) -> None:
        settings = self.settings
        if settings is not None and settings.wants_connection(entry.client.id):
            self.passthrough[entry.client.id] = entry

    def _passthrough_final(self, entry: Passthrough, *, forced: bool = False) -> None:
        now = now_ms()
        try:
            record = passthrough_record(entry, now)
        except Exception:
            self._lost(entry.client.id)
            return
        if forced:
            record.end_ms = now
            record.termination_state = Termination.PROXY_ERROR
            record.flow_end_reason = FlowEndReason.FORCED_END
        self._submit(record, entry.hello.cuts if entry.hello is not None else 0)

    def _hello_limits(self) -> Any:
        assert self.settings is not None
        return self.settings.hello_limits

    def _lost(self, flow_id: str) -> None:
        """A flow this code cannot read: logged and counted, the others go on."""
        logger.exception(f"flowexport: cannot read flow {flow_id}")
        if self.exporter is not None:
            self.exporter.count_lost()

    def _tick(self) -> None:
        """Interim records of long-lived exchanges and streams; re-arms itself every
        second."""
        self._timer = None
        settings = self.settings
        try:
            if settings is not None and self.exporter is not None:
                now = now_ms()
                if self.long.entries:
                    for entry in self.long.due(now, settings.active_timeout_ms):
                        if settings.wants(entry.flow):
                            self._interim(entry, settings, now)
                if self.streams.entries:
                    for counts in self.streams.due(now, settings.active_timeout_ms):
                        if counts.has_news and settings.wants(counts.flow):
                            self._submit(stream_record(
                                counts.flow, counts, counts.hello, now, Termination.COMPLETED,
                                FlowEndReason.ACTIVE_TIMEOUT))
        finally:
            self._timer = asyncio.get_running_loop().call_later(1.0, self._tick)

    def _interim(self, entry: LongLived, settings: Settings, now: int) -> None:
        try:
            record = record_from_facts(read_http_flow(entry.flow, now), settings.rules)
        except Exception:
            logger.exception(f"flowexport: cannot read flow {entry.flow.id}")
            return
        entry.apply(record)
        record.flow_end_reason = END_ACTIVE_TIMEOUT
        record.end_ms = now
        self._submit(record)

    def _register_stream_counter(self, wanted: bool) -> None:
        """StreamCounter's hooks run only while bodies can be streamed."""
        if wanted == self._streams_registered:
            return
        if wanted:
            ctx.master.addons.add(self._streams)
        else:
            # mitmproxy shutting down may have none left to unregister from
            with contextlib.suppress(Exception):
                ctx.master.addons.remove(self._streams)
        self._streams_registered = wanted

    def _watch_passthrough(self, wanted: bool) -> None:
        """PassthroughWatcher's hook runs only while connections can pass untouched."""
        if wanted == self._watching_passthrough:
            return
        if wanted:
            ctx.master.addons.add(self._passthrough_watcher)
        else:
            with contextlib.suppress(Exception):
                ctx.master.addons.remove(self._passthrough_watcher)
        self._watching_passthrough = wanted

    def _start_exporter(self) -> None:
        settings = self.settings
        if settings is None:
            return
        self.exporter = Exporter(settings.collectors, settings.session, settings.layouts,
                                 queue_size=settings.queue_size)
        if self._task is not None:  # re-configured while running: start right away
            self._task = self.exporter.start()

    def _stop_exporter(self) -> None:
        """Flush and close the current exporter; `_task` stays set if one was running."""
        if self.exporter is not None:
            self.exporter.close()
        self.exporter = None


# The hooks, bound at module level to the one addon object (see the module docstring);
# tests/test_addon_unit.py checks that every hook FlowExport defines is bound here.
_addon = FlowExport()
load = _addon.load
configure = _addon.configure
running = _addon.running
done = _addon.done
response = _addon.response
error = _addon.error
websocket_message = _addon.websocket_message
websocket_end = _addon.websocket_end
server_connect_error = _addon.server_connect_error
client_disconnected = _addon.client_disconnected
server_disconnected = _addon.server_disconnected
tcp_start = _addon.tcp_start
tcp_message = _addon.tcp_message
tcp_end = _addon.tcp_end
tcp_error = _addon.tcp_error
udp_start = _addon.udp_start
udp_message = _addon.udp_message
udp_end = _addon.udp_end
udp_error = _addon.udp_error
dns_request = _addon.dns_request
dns_response = _addon.dns_response
dns_error = _addon.dns_error
tls_clienthello = _addon.tls_clienthello
tls_failed_client = _addon.tls_failed_client
tls_failed_server = _addon.tls_failed_server
