"""The addon's glue with mitmproxy's own test flows and test context: options, hooks,
the hand-over to the exporter."""

from __future__ import annotations

import logging
from typing import Any

import flowexport as fx
import pytest
from mitmproxy import exceptions
from mitmproxy.addons import proxyserver
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from ipfix.termination import Termination


def configured(**options: object) -> tuple[Any, Any]:
    addon = fx.FlowExport()
    context = taddons.context(addon)
    context.configure(addon, **options)
    return addon, context


@pytest.mark.parametrize(("option", "value", "quoted"), [
    ("flowexport_collectors", ["gopher://x:1"], "gopher"),
    ("flowexport_collectors", ["[::1:4739"], "[::1:4739"),
    ("flowexport_collectors", ["file:/nonexistent/dir/flows.ipfix"],
     "file:/nonexistent/dir/flows.ipfix: cannot write"),
    ("flowexport_cookies", "sometimes", "sometimes"),
    ("flowexport_sampling", 0, "0"),
    ("flowexport_max_lengths", ["httpRequestTarget"], "httpRequestTarget"),
    ("flowexport_max_lengths", ["httpRequestTarge=9"], "did you mean httpRequestTarget?"),
    ("flowexport_filter", "~bogus", "~bogus"),
    ("flowexport_redact_values", ["(unclosed"], "(unclosed"),
    ("flowexport_kinds", ["http", "websocket"], "'websocket' not among"),
    ("flowexport_kinds", [], "at least one kind"),
])
def test_a_bad_value_at_start_is_one_line_and_stops_mitmdump(
        option: str, value: object, quoted: str, caplog: pytest.LogCaptureFixture) -> None:
    """At start a bad value is logged as one line (mitmdump exits when an error is logged
    while it starts), not raised: a raise would print a traceback."""
    addon = fx.FlowExport()
    with taddons.context(addon) as context, caplog.at_level(logging.ERROR):
        context.configure(addon, **{option: value})
        assert addon.settings is None and addon.exporter is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and quoted in errors[0] and "\n" not in errors[0]


def test_an_unknown_flowexport_option_is_named_with_the_one_meant(
        caplog: pytest.LogCaptureFixture) -> None:
    addon = fx.FlowExport()
    with taddons.context(addon) as context, caplog.at_level(logging.ERROR):
        context.options.deferred["flowexport_colectors"] = ["10.0.0.1:4739"]
        context.configure(addon)
        assert addon.settings is None
    assert [r.getMessage() for r in caplog.records] == [
        "flowexport: unknown option flowexport_colectors (did you mean flowexport_collectors?)"]


def test_a_bad_value_later_is_refused_and_the_old_one_stays() -> None:
    addon, context = configured()
    with context:
        addon._loop = object()  # running
        with pytest.raises(exceptions.OptionsError, match="sometimes"):
            context.configure(addon, flowexport_cookies="sometimes")
        assert addon.settings is not None and addon.settings.rules.cookies == "off"
        addon._loop = None
        addon.exporter.shutdown()


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


def test_kinds_choose_the_flows_and_the_templates_announced() -> None:
    addon, context = configured(flowexport_kinds=["dns", "tcp"])
    with context:
        settings = addon.settings
    assert [layout.kind for layout in settings.layouts] == ["connection", "dns"]
    assert settings.wants(tflow.ttcpflow()) and settings.wants(tflow.tdnsflow())
    assert not settings.wants(tflow.tflow(resp=True)) and not settings.wants(tflow.tudpflow())
    assert not settings.every_flow  # HTTP flows are not all exported


@pytest.mark.parametrize(("expression", "chosen"), [
    ("~tcp", {"tcp"}), ("~udp", {"udp"}), ("~dns", {"dns"}), ("!~dns", {"http", "tcp", "udp"}),
    ("~d address", {"http"}),  # mitmproxy's domain filter: the test HTTP flow's host
])
def test_the_filter_applies_to_every_kind_of_flow(expression: str, chosen: set[str]) -> None:
    addon, context = configured(flowexport_filter=expression)
    with context:
        settings = addon.settings
    flows = {"http": tflow.tflow(resp=True), "tcp": tflow.ttcpflow(),
             "udp": tflow.tudpflow(), "dns": tflow.tdnsflow()}
    assert {kind for kind, flow in flows.items() if settings.wants(flow)} == chosen


def test_the_stream_counter_runs_only_while_bodies_can_be_streamed() -> None:
    """mitmproxy calls every hook an addon has for every request, even one with nothing to
    do: the counter's two hooks are registered only while bodies can be streamed."""
    addon = fx.FlowExport()
    with taddons.context(addon, proxyserver.Proxyserver()) as context:
        addons = context.master.addons
        context.configure(addon)
        assert addon._streams not in addons.chain
        context.configure(addon, stream_large_bodies="1m")
        assert addons.chain[-1] is addon._streams  # after the others: sees their streams
        context.configure(addon, stream_large_bodies=None)
        assert addon._streams not in addons.chain
        context.configure(addon, flowexport_count_streams=True)
        assert addon._streams in addons.chain
        addon.done()
        assert addon._streams not in addons.chain


@pytest.mark.parametrize("side", ["request", "response"])
def test_a_body_streamed_where_nothing_counted_is_sized_from_content_length(side: str) -> None:
    addon, context = configured()
    with context:
        streamed = tflow.tflow(resp=True)  # an addon set .stream; no counter registered
        message = streamed.request if side == "request" else streamed.response
        assert message is not None
        message.stream = True
        message.data.content = None
        message.headers["content-length"] = "12345"
        addon.response(streamed)
        assert addon.exporter.queued == 1
        record = addon.exporter._queue[0]
        counted = record.uploaded_bytes if side == "request" else record.downloaded_bytes
        assert counted == 12345
        addon.exporter.shutdown()


def test_a_failed_connect_is_recorded_once_with_or_without_a_flow() -> None:
    """An eager connect fails before any flow exists: the connection makes the record.
    A flow's own connect fails the same way, and then the flow's error makes it."""
    from mitmproxy.proxy import server_hooks
    from mitmproxy.test import tflow as tf

    addon, context = configured()
    with context:
        exporter = addon.exporter
        eager = tf.tclient_conn()
        eager.proxy_mode = ProxyMode.parse("reverse:http://127.0.0.1:1")
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
        assert record.termination_state == Termination.UPSTREAM_CONNECT_FAILED
        assert record.method == ""  # reverse mode: nothing asked for but the connection
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
        addon._streams.requestheaders(flow)  # our counter wraps the request stream
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
    assert {"response", "error", "load", "configure", "done"} <= on_module
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


def test_a_mitmdump_without_the_packages_is_told_the_fix() -> None:
    """mitmdump from another environment loads the script but finds no `ipfix`: the error
    says which Python lacks it and how to fix that."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(fx.__file__)
    result = subprocess.run(
        [sys.executable, "-c", "import runpy, sys; sys.modules['ipfix'] = None; "
                               f"runpy.run_path({str(script)!r})"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "the 'ipfix' package is not installed in the Python that runs" in result.stderr
    assert "pip install" in result.stderr
