"""How a flow ended: the termination codes every kind of record shares, and the IANA
flowEndReason values we send.

The codes are part of the public interface (the README documents them, collectors'
dashboards filter on them): a code never changes meaning, new ones take the next number.
HTTP records carry them as httpTerminationStateCode, the other kinds as
flowTerminationStateCode.
"""

from __future__ import annotations

from enum import IntEnum


class Termination(IntEnum):
    """How a flow ended."""

    COMPLETED = 0
    CLIENT_ABORTED = 1
    UPSTREAM_CONNECT_FAILED = 2
    UPSTREAM_TIMEOUT = 3  # HTTP: no response in time; DNS: no answer before the end
    UPSTREAM_ABORTED = 4
    KILLED_BY_PROXY = 5
    REJECTED_BY_PROXY = 6  # includes messages the proxy could not parse
    PROXY_ERROR = 7
    CLIENT_REJECTED_CERTIFICATE = 8  # the client's TLS refused the proxy's certificate
    CLIENT_TLS_FAILED = 9  # any other client-side handshake failure
    UPSTREAM_CERTIFICATE_INVALID = 10  # the proxy refused the upstream's certificate
    UPSTREAM_TLS_FAILED = 11  # any other upstream-side handshake failure
    IDLE_TIMEOUT = 12  # the proxy closed a connection that stayed silent too long

    @property
    def words(self) -> str:
        """For people: 'upstream connect failed'."""
        return self.name.lower().replace("_", " ")


class FlowEndReason(IntEnum):
    """flowEndReason values we send (IANA)."""

    IDLE_TIMEOUT = 1  # the proxy closed a stream that stayed silent
    ACTIVE_TIMEOUT = 2  # the record of an interval of a long-lived flow
    END_OF_FLOW = 3
    FORCED_END = 4  # an error, a kill, shutdown
