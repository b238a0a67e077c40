"""flowexport: one IPFIX / NetFlow v9 flow record per HTTP exchange, from inside mitmproxy.

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

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.flow import Error
from mitmproxy.proxy import server_hooks

try:
    from ipfix.exporter import Exporter
    from ipfix.http_record import HTTP_RECORDS, HttpFlowRecord
    from ipfix.termination import Termination
    from mitmflows import options
    from mitmflows.convert import now_ms
    from mitmflows.facts import connect_failure_record, read_http_flow, record_from_facts
    from mitmflows.longlived import LongLived, LongLivedFlows, StreamCounter
    from mitmflows.options import Settings
    from mitmflows.termination import END_ACTIVE_TIMEOUT, END_FORCED, termination_of
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
        self._connect_failures: dict[str, HttpFlowRecord] = {}

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
        if self.exporter is None:
            self._start_exporter()  # queues from now on; the task starts in `running`
        elif previous is not None and (previous.collectors, previous.session,
                                       previous.queue_size) != (
                self.settings.collectors, self.settings.session, self.settings.queue_size):
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
        for record in self._connect_failures.values():
            self._submit(record)
        self._connect_failures.clear()
        self._register_stream_counter(False)
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
        """Eager connects (reverse mode, CONNECT) fail before any HTTP flow exists: record the
        attempt. A connect for a flow fails the same way, and mitmproxy then reports the
        flow's error, which makes the record instead: so this one waits for the client to
        go (mitmproxy closes it after a failed eager connect) and the error hook drops it."""
        if self.settings is not None:
            self._connect_failures[data.client.id] = connect_failure_record(data, now_ms())

    def client_disconnected(self, client: Any) -> None:
        if self._connect_failures:
            record = self._connect_failures.pop(client.id, None)
            if record is not None:
                self._submit(record)

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

    def _submit(self, record: HttpFlowRecord) -> None:
        if self.exporter is not None:
            self.exporter.submit(record)

    def _tick(self) -> None:
        """Interim records of long-lived exchanges; re-arms itself every second."""
        self._timer = None
        settings = self.settings
        try:
            if settings is not None and self.exporter is not None and self.long.entries:
                now = now_ms()
                for entry in self.long.due(now, settings.active_timeout_ms):
                    if settings.wants(entry.flow):
                        self._interim(entry, settings, now)
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
