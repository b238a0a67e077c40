"""Through a real mitmdump: no secret a client puts in a query or a Referer reaches the
collector, in any of the forms real APIs name them, in IPFIX or in NetFlow v9."""

from __future__ import annotations

import http.client
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e import Mitmdump, Receiver, Upstream, wait_until
from tests.test_privacy import JWT, sensitive_name

pytestmark = pytest.mark.slow  # real processes: run by .ci/run, not by -m 'not slow'

# a mark no datagram holds otherwise (element names, for one, are in the type records)
SECRET = st.text("ABCDEFGHJKMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789-_",
                 min_size=12, max_size=24).map(lambda s: f"sEcR3t-{s}")


class Proxy:
    def __init__(self, mitmdump: Mitmdump, receivers: list[Receiver]) -> None:
        self.mitmdump = mitmdump
        self.receivers = receivers
        self.counter = itertools.count()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    confdir: Path = tmp_path_factory.mktemp("privacy")
    ipfix, v9 = Receiver(), Receiver()
    with Upstream() as upstream, Mitmdump(
            confdir, "--mode", f"reverse:{upstream.url}", "--set", "keep_host_header=true",
            "--set", "flowexport_flush_interval_ms=5",
            "--set", f"flowexport_collectors=ipfix://127.0.0.1:{ipfix.port}",
            "--set", f"flowexport_collectors=netflow9://127.0.0.1:{v9.port}") as mitmdump:
        yield Proxy(mitmdump, [ipfix, v9])
    ipfix.close()
    v9.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(sensitive_name(), min_size=1, max_size=3),
       secrets=st.lists(SECRET, min_size=3, max_size=3, unique=True),
       separator=st.sampled_from("&;"), jwt_name=st.sampled_from(["data", "x", "v"]))
def test_no_secret_reaches_the_collector(proxy: Proxy, names: list[str], secrets: list[str],
                                         separator: str, jwt_name: str) -> None:
    index = next(proxy.counter)
    query = separator.join(["page=2", *(f"{n}={s}" for n, s in zip(names, secrets,
                                                                    strict=False)),
                            f"{jwt_name}={JWT}"])
    referer_query = separator.join(f"{n}={s}" for n, s in zip(reversed(names),
                                                              reversed(secrets), strict=False))
    connection = http.client.HTTPConnection("127.0.0.1", proxy.mitmdump.port, timeout=10)
    connection.request("GET", f"/p/{index}?{query}", headers={
        "Host": "privacy.test", "Referer": f"https://app.example/callback?{referer_query}"})
    assert connection.getresponse().status == 200
    connection.close()

    def arrived() -> bool:
        for receiver in proxy.receivers:
            receiver.drain()
        return all(any(f.get("httpRequestTarget") == f"/p/{index}" for f in r.flows)
                   for r in proxy.receivers)

    assert wait_until(arrived, 10)
    wire = b"".join(b"".join(r.raw) for r in proxy.receivers)
    for secret in (*secrets, JWT):
        assert secret.encode() not in wire
    ipfix_flow = next(f for f in proxy.receivers[0].flows
                      if f.get("httpRequestTarget") == f"/p/{index}")
    assert str(ipfix_flow["httpRequestQuery"]).startswith("page=2")  # the shape stays
    assert str(ipfix_flow["httpReferrer"]).startswith("https://app.example/callback?")
