"""deploy/: the entrypoint's command line, run for real without Docker; the compose file's
references; several proxy processes whose records stay apart at the collector."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import ruamel.yaml

from ipfix.destinations import parse_collector
from tests.e2e import ADDON, Collector, Upstream, curl, free_port, wait_until

pytestmark = pytest.mark.slow  # real processes: run by .ci/run, not by -m 'not slow'

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ENTRYPOINT = DEPLOY / "entrypoint.sh"


def entrypoint_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = dict(os.environ, FLOWEXPORT_ADDON=str(ADDON), FLOWEXPORT_CONFDIR=str(tmp_path),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.update(values)
    return env


def test_entrypoint_builds_the_command_from_the_environment(tmp_path: Path) -> None:
    result = subprocess.run(["sh", str(ENTRYPOINT)], capture_output=True, text=True, check=True,
                            env=entrypoint_env(
                                tmp_path, FLOWEXPORT_DRY_RUN="1",
                                FLOWEXPORT_UPSTREAM="http://app:8000",
                                FLOWEXPORT_COLLECTORS="collector:4739,netflow9://goflow2:2055",
                                FLOWEXPORT_DOMAIN_ID="7",
                                FLOWEXPORT_OPTIONS="--set flowexport_cookies=names"))
    args = result.stdout.splitlines()
    assert args[0] == "mitmdump"
    assert "reverse:http://app:8000" in args and "keep_host_header=true" in args
    assert "flowexport_collectors=collector:4739" in args
    assert "flowexport_collectors=netflow9://goflow2:2055" in args
    assert "flowexport_observation_domain_id=7" in args
    assert args[-2:] == ["--set", "flowexport_cookies=names"]


def test_entrypoint_refuses_to_start_without_an_upstream(tmp_path: Path) -> None:
    env = entrypoint_env(tmp_path)
    env.pop("FLOWEXPORT_UPSTREAM", None)
    result = subprocess.run(["sh", str(ENTRYPOINT)], capture_output=True, text=True, env=env,
                            check=False)
    assert result.returncode != 0 and "FLOWEXPORT_UPSTREAM" in result.stderr


def answers(port: int) -> bool:
    return curl(f"http://127.0.0.1:{port}/ready", timeout=2).returncode == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_scale_out_records_stay_apart(tmp_path: Path) -> None:
    """deploy/scale-out.sh starts two proxy processes, as behind a load balancer: one
    collector tells their records apart by observation domain and exporter."""
    first = free_port()
    second = first + 1
    with Upstream() as upstream, Collector() as collector:
        script = subprocess.Popen(
            ["sh", str(DEPLOY / "scale-out.sh"), "2", str(first)], stdout=subprocess.PIPE,
            text=True, env=entrypoint_env(tmp_path, FLOWEXPORT_UPSTREAM=upstream.url,
                                          FLOWEXPORT_LISTEN_HOST="127.0.0.1",
                                          FLOWEXPORT_COLLECTORS=collector.address,
                                          TMPDIR=str(tmp_path)))
        try:
            for port in (first, second):
                assert wait_until(partial(answers, port), 30)
            for index in range(6):
                port = (first, second)[index % 2]
                curl(f"http://127.0.0.1:{port}/via{index % 2 + 1}")
            records = collector.wait_for(6, where=lambda r: r["httpRequestTarget"] != "/ready")
        finally:
            script.terminate()  # the script stops its proxies, which flush
            out, _ = script.communicate(timeout=30)
        report = collector.stop()
    assert f"server proxy2 127.0.0.1:{second} check" in out  # the HAProxy backend it prints
    records = [r for r in records if r["httpRequestTarget"] != "/ready"]
    by_domain = {d: {r["httpRequestTarget"] for r in records if r["_domain"] == d} for d in (1, 2)}
    assert by_domain == {1: {"/via1"}, 2: {"/via2"}}
    assert len({r["_exporter"] for r in records}) == 2  # two sockets, two template spaces
    assert "0 lost by sequence numbers" in report


def run_scale_out(tmp_path: Path, *args: str, timeout: float = 60,
                  **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(DEPLOY / "scale-out.sh"), *args], capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env=entrypoint_env(tmp_path, TMPDIR=str(tmp_path), **env))


def test_scale_out_checks_prerequisites_before_printing_anything(tmp_path: Path) -> None:
    environment = entrypoint_env(tmp_path)
    environment.pop("FLOWEXPORT_UPSTREAM", None)
    result = subprocess.run(["sh", str(DEPLOY / "scale-out.sh"), "2"], capture_output=True,
                            text=True, timeout=30, check=False, env=environment)
    assert (result.returncode, result.stdout) == (2, "")
    assert "FLOWEXPORT_UPSTREAM" in result.stderr
    result = run_scale_out(tmp_path, "two", FLOWEXPORT_UPSTREAM="http://127.0.0.1:1")
    assert (result.returncode, result.stdout) == (2, "") and "usage" in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run_scale_out(tmp_path, "2", str(port - 1), FLOWEXPORT_UPSTREAM="http://x:1",
                               FLOWEXPORT_LISTEN_HOST="127.0.0.1")
    assert (result.returncode, result.stdout) == (2, "")
    assert f"port {port} on 127.0.0.1 is not free" in result.stderr
    # a copy outside the checkout, with no mitmdump on PATH: it says how to get one
    copy = tmp_path / "deploy"
    copy.mkdir()
    for name in ("scale-out.sh", "entrypoint.sh"):
        shutil.copy(DEPLOY / name, copy / name)
    result = subprocess.run(["sh", str(copy / "scale-out.sh"), "1"], capture_output=True,
                            text=True, timeout=30, check=False,
                            env={"PATH": "/usr/bin:/bin", "FLOWEXPORT_UPSTREAM": "http://x:1"})
    assert (result.returncode, result.stdout) == (2, "")
    assert "mitmdump not found" in result.stderr and "make install" in result.stderr


def test_scale_out_reports_a_proxy_that_dies_with_its_log(tmp_path: Path) -> None:
    first = free_port()
    result = run_scale_out(tmp_path, "2", str(first), timeout=90,
                           FLOWEXPORT_UPSTREAM="http://127.0.0.1:1",
                           FLOWEXPORT_LISTEN_HOST="127.0.0.1",
                           FLOWEXPORT_OPTIONS="--set flowexport_cookies=bogus")
    assert result.returncode == 1
    assert "server proxy2" in result.stdout  # they had started
    assert "exited with status 1; its log" in result.stderr
    assert "flowexport_cookies: 'bogus'" in result.stderr  # the cause, from the log


def test_compose_file_refers_to_files_that_exist_and_its_default_stack_stands_alone() -> None:
    compose = ruamel.yaml.YAML(typ="safe").load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (DEPLOY / source).is_file(), (name, source)
        for dependency in service.get("depends_on", []):
            assert dependency in services, (name, dependency)
            # a service of the plain `up` waits for no service of a profile
            if not service.get("profiles"):
                assert not services[dependency].get("profiles"), (name, dependency)
    default = services["proxy"]["environment"]["FLOWEXPORT_COLLECTORS"]
    match = re.fullmatch(r"\$\{FLOWEXPORT_COLLECTORS:-(.+)\}", default)
    assert match, default
    for entry in match.group(1).split():  # what a plain `up` exports to: all started by it
        host = parse_collector(entry).host
        assert host in services and not services[host].get("profiles"), entry
    assert "8080:8080" in services["proxy"]["ports"]
    # one image: built by the proxy service, run by the collector too
    images = {s.get("image") for s in services.values() if s.get("build")}
    assert images == {"flowexport:local"} and services["collector"]["image"] in images
    assert sum(1 for s in services.values() if s.get("build")) == 1
    assert "human" in services["collector"]["entrypoint"]
    kafka_users = [n for n, s in services.items() if "kafka" in s.get("depends_on", {})]
    for name in kafka_users:  # goflow2 exits when Kafka does not answer yet
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["kafka"]["healthcheck"]["test"]
    assert services["goflow2-kafka"]["restart"] == "on-failure"
    # the Kafka path carries every record: protobuf, read by ClickHouse with our schema
    assert "-format=bin" in services["goflow2-kafka"]["command"]
    assert any(v.startswith("./clickhouse/flowexport.proto:/var/lib/clickhouse/format_schemas/")
               for v in services["clickhouse"]["volumes"])
    for name in ("goflow2", "goflow2-kafka"):  # one worker: no data before its template
        listen = next(a for a in services[name]["command"] if a.startswith("-listen="))
        assert listen.endswith("?workers=1"), name


def test_dockerfile_installs_the_project_and_runs_unprivileged() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM mitmproxy/mitmproxy:12." in text
    assert "pip install --no-cache-dir /opt/flowexport" in text
    assert "USER mitmproxy" in text and "HEALTHCHECK" in text
    assert 'ENTRYPOINT ["flowexport-entrypoint"]' in text
    for source in ("pyproject.toml", "setup.py", "README.md", "ipfix", "addon",
                   "deploy/entrypoint.sh"):
        assert (DEPLOY.parent / source).exists(), source


def test_find_python_says_how_to_get_one_when_there_is_none(tmp_path: Path) -> None:
    """No Python >= 3.12 on PATH and no pyenv: the message names ways to get one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "cat", "sort", "ls", "env"):  # what the script uses; no python
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run([str(Path(__file__).resolve().parent.parent / "tools" /
                                 "find-python")], capture_output=True, text=True, timeout=30,
                            check=False, env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert result.returncode == 1 and result.stdout == ""
    assert "no Python >= 3.12 found" in result.stderr
    assert "uv python install 3.12" in result.stderr and "pyenv install 3.12" in result.stderr
