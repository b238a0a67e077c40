"""The addon's pure parts with mitmproxy's own test flows and test context."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mitmproxy import exceptions
from mitmproxy.addons import proxyserver
from mitmproxy.flow import Error
from mitmproxy.test import taddons, tflow

ADDON = Path(__file__).resolve().parent.parent / "addon" / "flowexport.py"


def load_addon() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flowexport_under_test", ADDON)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fx: Any = load_addon()


def configured(**options: object) -> tuple[Any, Any]:
    addon = fx.FlowExport()
    context = taddons.context(addon)
    context.configure(addon, **options)
    return addon, context


def test_record_from_flow_maps_every_field() -> None:
    addon, context = configured(flowexport_cookies="hashed", flowexport_hash_key="k")
    with context:
        flow = tflow.tflow(resp=True)
        flow.request.path = "/p/a?token=t&x=1"
        flow.request.headers["User-Agent"] = "ua"
        flow.request.headers["Cookie"] = "sid=abc"
        flow.request.headers["X-Forwarded-For"] = "198.51.100.1"
        flow.request.headers["Content-Type"] = "application/json"
        assert flow.response is not None
        flow.response.headers["Content-Type"] = "text/plain"
        flow.client_conn.peername = ("::ffff:192.0.2.1", 5555)
        flow.client_conn.sockname = ("192.0.2.2", 8080)
        flow.server_conn.peername = ("198.51.100.9", 80)
        flow.client_conn.sni = "sni.test"
        flow.client_conn.tls_version = "TLSv1.3"
        record = fx.record_from_flow(flow, addon.settings, 1_800_000_000_000)
    assert record.client_address == "192.0.2.1"  # IPv4-mapped unwrapped
    assert (record.client_port, record.proxy_port) == (5555, 8080)
    assert (record.upstream_address, record.upstream_port) == ("198.51.100.9", 80)
    assert record.method == "GET" and record.target == "/p/a"
    assert record.query == "token=REDACTED&x=1"
    assert record.host == "address"  # tflow sends no Host header: the request's host
    assert record.user_agent == "ua" and record.content_type == "application/json"
    assert record.response_content_type == "text/plain"
    assert record.x_forwarded_for == "198.51.100.1"
    assert record.cookie.startswith("sid=") and "abc" not in record.cookie
    assert record.status_code == 200 and record.reason == "OK"
    assert record.uploaded_bytes == len(flow.request.raw_content or b"")
    assert record.downloaded_bytes == len(flow.response.raw_content or b"")
    assert record.octets == record.initiator_octets + record.responder_octets
    assert record.tls_server_name == "sni.test" and record.tls_version == "TLSv1.3"
    assert record.flow_id == int(flow.id.replace("-", "")[:16], 16)


def test_invalid_utf8_headers_are_replaced_not_raised() -> None:
    addon, context = configured()
    with context:
        flow = tflow.tflow(resp=True)
        flow.request.headers.fields = ((b"User-Agent", b"\xff\xfeagent"), (b"Host", b"h\xc3"))
        record = fx.record_from_flow(flow, addon.settings, 0)
    assert record.user_agent == "\ufffd\ufffdagent"
    assert record.host == "h\ufffd"


def test_control_characters_are_replaced_tabs_kept() -> None:
    addon, context = configured()
    with context:
        flow = tflow.tflow(resp=True)
        flow.request.headers.fields = ((b"User-Agent", b"a\x00b\r\nc\td\x7f"),)
        record = fx.record_from_flow(flow, addon.settings, 0)
    assert record.user_agent == "a\ufffdb\ufffd\ufffdc\td\ufffd"


@pytest.mark.parametrize(("message", "code"), [
    (Error.KILLED_MESSAGE, 5),
    ("Request body exceeds mitmproxy's body_size_limit.", 6),
    ("Response body exceeds mitmproxy's body_size_limit.", 5),
    ("Received bad header from client, refusing to prevent request smuggling attacks.", 6),
    ("Client disconnected.", 1),
])
def test_termination_from_error_text(message: str, code: int) -> None:
    flow = tflow.tflow(resp=False)
    assert fx.termination_of(flow, Error(message), 0, 600_000) == code


def test_termination_connect_failed_and_upstream_timeout() -> None:
    flow = tflow.tflow(resp=False)
    flow.server_conn.peername = None
    assert fx.termination_of(flow, Error("Connection refused"), 0, 600_000) == 2
    flow = tflow.tflow(resp=False)
    assert flow.request.timestamp_end is not None
    started = int(flow.request.timestamp_end * 1000)
    assert fx.termination_of(flow, Error("Client disconnected."), started + 600_000,
                             600_000) == 3
    assert fx.termination_of(flow, Error("Client disconnected."), started + 10, 600_000) == 1


@pytest.mark.parametrize(("option", "value", "quoted"), [
    ("flowexport_collectors", ["gopher://x:1"], "gopher"),
    ("flowexport_collectors", ["[::1:4739"], "[::1:4739"),
    ("flowexport_cookies", "sometimes", "sometimes"),
    ("flowexport_sampling", 0, "0"),
    ("flowexport_max_lengths", ["httpRequestTarget"], "httpRequestTarget"),
    ("flowexport_filter", "~bogus", "~bogus"),
    ("flowexport_redact_values", ["(unclosed"], "(unclosed"),
])
def test_bad_options_quote_the_value(option: str, value: object, quoted: str) -> None:
    addon = fx.FlowExport()
    with taddons.context(addon) as context, pytest.raises(exceptions.OptionsError,
                                                         match=re.escape(quoted)):
        context.configure(addon, **{option: value})


def test_options_are_parsed_once_into_settings() -> None:
    addon, context = configured(
        flowexport_collectors=["netflow9://[::1]:2055", "file:/tmp/x.ipfix", "127.0.0.1:4739"],
        flowexport_observation_domain_id=7, flowexport_max_lengths=["httpRequestHost=32"],
        flowexport_sampling=5)
    with context:
        settings = addon.settings
    assert [str(c) for c in settings.collectors] == [
        "netflow9://[::1]:2055", "file:/tmp/x.ipfix", "ipfix://127.0.0.1:4739"]
    assert settings.session.observation_domain_id == 7
    assert settings.session.max_lengths["httpRequestHost"] == 32
    assert "token" in settings.rules.redactor.names
    assert settings.sampling == settings.session.sampling_interval == 5  # announced too


@pytest.mark.parametrize("side", ["request", "response"])
def test_header_hooks_are_bound_only_while_bodies_can_be_streamed(side: str) -> None:
    """mitmproxy calls a bound hook for every request even when it does nothing; without
    stream_large_bodies there is nothing to count until a streamed body shows up."""
    addon = fx.FlowExport()
    hooks = ("requestheaders", "responseheaders")
    table: dict[str, Any] = {name: getattr(addon, name) for name in hooks}
    addon.hook_table = table
    with taddons.context(addon, proxyserver.Proxyserver()) as context:
        context.configure(addon)
        assert not set(hooks) & set(table)
        context.configure(addon, stream_large_bodies="1m")
        assert all(table[name] == getattr(addon, name) for name in hooks)
        context.configure(addon, stream_large_bodies=None)
        assert not set(hooks) & set(table)
        streamed = tflow.tflow(resp=True)  # streamed by an addon before ours: uncounted
        message = streamed.request if side == "request" else streamed.response
        assert message is not None
        message.stream = True
        message.data.content = None
        message.headers["content-length"] = "12345"
        addon.response(streamed)
        hook = f"{side}headers"
        assert table[hook] == getattr(addon, hook)  # from now on, counted
        other = next(name for name in hooks if name != hook)
        assert other not in table  # the other side has not been seen streaming
        assert addon.exporter.queued == 1
        record = addon.exporter._queue[0]
        counted = record.uploaded_bytes if side == "request" else record.downloaded_bytes
        assert counted == 12345
        context.configure(addon, flowexport_sampling=1)
        assert hook in table  # stays, once streams were seen


def test_a_failed_connect_is_recorded_once_with_or_without_a_flow() -> None:
    """An eager connect fails before any flow exists: the connection makes the record.
    A flow's own connect fails the same way, and then the flow's error makes it."""
    from mitmproxy.proxy import server_hooks
    from mitmproxy.test import tflow as tf

    addon, context = configured()
    with context:
        exporter = addon.exporter
        eager = tf.tclient_conn()
        addon.server_connect_error(server_hooks.ServerConnectionHookData(
            server=tf.tserver_conn(), client=eager))
        assert exporter.queued == 0  # it may still turn out to be a flow's
        flow = tflow.tflow(err=True)
        addon.server_connect_error(server_hooks.ServerConnectionHookData(
            server=flow.server_conn, client=flow.client_conn))
        addon.error(flow)
        addon.client_disconnected(flow.client_conn)
        assert [r.method for r in exporter._queue] == ["GET"]  # the flow's
        addon.client_disconnected(eager)
        assert exporter.queued == 2
        record = exporter._queue[1]
        assert record.termination_state == fx.Termination.UPSTREAM_CONNECT_FAILED
        assert record.method == ""
        late = tf.tclient_conn()  # a client still connected at shutdown: flushed then
        addon.server_connect_error(server_hooks.ServerConnectionHookData(
            server=tf.tserver_conn(), client=late))
        addon.done()
        assert exporter.statistics.records == 3


def test_a_counted_request_and_an_uncounted_streamed_response_both_have_their_bytes() -> None:
    """The request's stream was ours to count; the response was streamed where no hook of
    ours saw it: its size comes from Content-Length, the request's from the counter."""
    addon, context = configured()
    with context:
        flow = tflow.tflow(resp=True)
        response = flow.response
        assert response is not None
        flow.request.stream = True
        addon.requestheaders(flow)  # our counter wraps the request stream
        assert callable(flow.request.stream)
        flow.request.stream(b"x" * 300)
        flow.request.data.content = None
        response.stream = True
        response.data.content = None
        response.headers["content-length"] = "4321"
        addon.response(flow)
        record = addon.exporter._queue[-1]
        assert (record.uploaded_bytes, record.downloaded_bytes) == (300, 4321)


def test_a_flow_that_cannot_be_read_is_counted_and_costs_no_other_record() -> None:
    addon, context = configured()
    with context:
        broken = tflow.tflow(resp=True)
        broken.request = None  # type: ignore[assignment]  # never from mitmproxy; still survived
        good = tflow.tflow(resp=True)
        addon._held = [broken, good]
        addon._release()
        exporter = addon.exporter
        assert exporter.queued == 1
        assert exporter.statistics.encode_errors == 1
        assert exporter._targets[0].session.statistics.not_sent_flow_records == 1
        record = exporter._queue[0]
        assert good.response is not None and good.response.timestamp_end is not None
        assert record.end_ms == int(good.response.timestamp_end * 1000)
        failed = tflow.tflow(err=True)
        failed.request = None  # type: ignore[assignment]
        addon.error(failed)  # in the hook itself: logged and counted, not raised
        assert exporter.statistics.encode_errors == 2
        assert exporter.queued == 1
        exporter.shutdown()


def test_every_hook_of_the_addon_is_bound_at_module_level() -> None:
    """mitmproxy calls the module's hooks (there is no `addons` list to walk into): a hook
    added to FlowExport but not bound beside it would never run."""
    from mitmproxy import hooks

    names = set(hooks.all_hooks)
    on_class = {name for name in names if callable(getattr(fx.FlowExport, name, None))}
    on_module = {name for name in names if callable(getattr(fx, name, None))}
    assert on_class == on_module
    assert {"requestheaders", "response", "error", "load", "configure"} <= on_module
    assert not hasattr(fx, "addons")
    assert all(getattr(fx, name).__self__ is fx._addon for name in on_module)


def test_redaction_options_replace_add_and_take_value_patterns() -> None:
    addon, context = configured(flowexport_redact_query=["ticket"],
                                flowexport_redact_query_add=["voucher"],
                                flowexport_redact_values=[r"AKIA[0-9A-Z]{16}"])
    with context:
        redactor = addon.settings.rules.redactor
    assert redactor.names == {"ticket", "voucher"}
    assert redactor.query("ticket=1&voucher=2&token=3&k=AKIAABCDEFGHIJKLMNOP") == (
        "ticket=REDACTED&voucher=REDACTED&token=3&k=REDACTED")
