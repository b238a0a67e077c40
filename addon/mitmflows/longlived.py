"""Exchanges that last: WebSockets and streamed bodies.

They get a record at every active timeout (flowEndReason 2) and one at their end, each
with the bytes since the previous record of the same flowId. A streamed body never sits
in `content`, so its bytes are counted as they pass, by wrapping the flow's `stream`
callable when its headers arrive (`StreamCounter`); a body streamed where no counter
was registered is sized from its Content-Length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from ipfix.http_record import HttpFlowRecord

logger = logging.getLogger(__name__)


@dataclass
class LongLived:
    """One tracked exchange: its bytes so far, and what earlier records already said."""

    flow: http.HTTPFlow
    last_export_ms: int
    uploaded: int = 0  # body or message bytes counted so far
    downloaded: int = 0
    exported_up: int = 0  # what earlier records already carried
    exported_down: int = 0
    head_exported: bool = False
    counts_request: bool = False  # our counter wraps the request's / response's stream
    counts_response: bool = False

    def apply(self, record: HttpFlowRecord) -> None:
        """Make `record`'s counters deltas: the bytes since this flow's previous record.
        The heads (request line, headers) count once, in the first."""
        request_head = record.initiator_octets - record.uploaded_bytes
        response_head = record.responder_octets - record.downloaded_bytes
        up = record.uploaded_bytes + self.uploaded - self.exported_up
        down = record.downloaded_bytes + self.downloaded - self.exported_down
        first = not self.head_exported
        record.uploaded_bytes, record.downloaded_bytes = up, down
        record.initiator_octets = up + (request_head if first else 0)
        record.responder_octets = down + (response_head if first else 0)
        record.octets = record.initiator_octets + record.responder_octets
        self.exported_up += up
        self.exported_down += down
        self.head_exported = True


class LongLivedFlows:
    """The long-lived exchanges in progress, by flow id."""

    def __init__(self) -> None:
        self.entries: dict[str, LongLived] = {}
        self._warned_uncounted = False

    def track(self, flow: http.HTTPFlow, now_ms: int) -> LongLived:
        entry = self.entries.get(flow.id)
        if entry is None:
            entry = self.entries[flow.id] = LongLived(flow, now_ms)
        return entry

    def pop(self, flow_id: str) -> LongLived | None:
        return self.entries.pop(flow_id, None)

    def due(self, now_ms: int, active_timeout_ms: int) -> list[LongLived]:
        """The entries whose active timeout has passed; their clock restarts now."""
        due = [e for e in self.entries.values() if now_ms - e.last_export_ms >= active_timeout_ms]
        for entry in due:
            entry.last_export_ms = now_ms
        return due

    def count_stream(self, flow: http.HTTPFlow, *, request: bool, now_ms: int) -> None:
        """Wrap the request's or response's stream so its bytes are counted as they pass
        (after any stream function another addon set)."""
        message = flow.request if request else flow.response
        if message is None or not message.stream:
            return
        entry = self.track(flow, now_ms)
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

    def count_message(self, flow: http.HTTPFlow) -> None:
        """A WebSocket message of a tracked flow: its bytes, client's or server's."""
        entry = self.entries.get(flow.id)
        if entry is None or flow.websocket is None or not flow.websocket.messages:
            return
        message = flow.websocket.messages[-1]
        if message.from_client:
            entry.uploaded += len(message.content)
        else:
            entry.downloaded += len(message.content)

    def uncounted(self, flow: http.HTTPFlow, entry: LongLived | None) -> LongLived | None:
        """A flow that ends with a body streamed past our counter (none was registered, or
        mitmproxy began streaming a chunked body midway): nobody counted its bytes, so
        Content-Length, where there is one, says how many. The other body of the exchange
        may have been counted (`entry`)."""
        counted = (entry is not None and entry.counts_request,
                   entry is not None and entry.counts_response)
        sizes = []
        for message, ours in zip((flow.request, flow.response), counted, strict=True):
            streamed = (message is not None and not ours and bool(message.stream)
                        and message.raw_content is None)
            sizes.append(declared_length(message) if streamed else None)
        if sizes == [None, None]:
            return entry
        if not self._warned_uncounted:
            self._warned_uncounted = True
            logger.warning("flowexport: a body was streamed where flowexport was not counting "
                           "(an addon set .stream without stream_large_bodies, or mitmproxy "
                           "began streaming a chunked body midway): its size comes from "
                           "Content-Length, 0 without one. Set flowexport_count_streams=true "
                           "to count such bodies as they pass.")
        if entry is None:
            entry = LongLived(flow, 0)
        entry.uploaded += sizes[0] or 0
        entry.downloaded += sizes[1] or 0
        return entry


def declared_length(message: http.Message | None) -> int:
    """Content-Length of a message, 0 when absent or not a number."""
    value = message.headers.get("content-length", "") if message is not None else ""
    return int(value) if value.isdigit() else 0


class StreamCounter:
    """A helper addon with the two hooks that see a body's stream before it flows.

    mitmproxy calls every hook an addon has for every request, which costs even when the
    hook has nothing to do, so flowexport registers this one only while bodies can be
    streamed (`stream_large_bodies` or `flowexport_count_streams`). Registered after the
    other addons, it sees the streams they set too.
    """

    name = "flowexport-streams"

    def __init__(self, flows: LongLivedFlows, clock: Callable[[], int]) -> None:
        self.flows = flows
        self.clock = clock

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.stream:
            self.flows.count_stream(flow, request=True, now_ms=self.clock())

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and flow.response.stream:
            self.flows.count_stream(flow, request=False, now_ms=self.clock())
