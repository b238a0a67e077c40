"""The naive alternative to flowexport: one JSON line per HTTP flow, sent over UDP.

    mitmdump -s benchmarks/json_udp_addon.py --set json_udp_target=127.0.0.1:9999

What a user would write in twenty lines to log every request from mitmproxy; the
instruction benchmark runs it beside flowexport to show what each costs.
"""

import socket
from typing import Any

import msgspec
from mitmproxy import ctx, http

encoder = msgspec.json.Encoder()
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def load(loader: Any) -> None:
    loader.add_option("json_udp_target", str, "127.0.0.1:9999", "HOST:PORT to send lines to")


def configure(updated: set[str]) -> None:
    host, _, port = ctx.options.json_udp_target.rpartition(":")
    sock.connect((host, int(port)))


def response(flow: http.HTTPFlow) -> None:
    request, response = flow.request, flow.response
    assert response is not None
    line = {"start": request.timestamp_start, "end": response.timestamp_end,
            "client": flow.client_conn.peername, "method": request.method,
            "host": request.pretty_host, "path": request.path, "status": response.status_code,
            "request_bytes": len(request.raw_content or b""),
            "response_bytes": len(response.raw_content or b""),
            "user_agent": request.headers.get("user-agent", "")}
    sock.send(encoder.encode(line) + b"\n")
