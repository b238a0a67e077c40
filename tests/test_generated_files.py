"""Files generated from the element registry must not drift from it."""

from __future__ import annotations

from pathlib import Path

from ipfix.fields import markdown_table, pmacct_primitives
from ipfix.ie import DEFAULT_REGISTRY

ROOT = Path(__file__).resolve().parent.parent


def test_readme_field_table_matches_the_registry() -> None:
    readme = (ROOT / "README.md").read_text()
    begin = readme.index("<!-- fields:begin")
    start = readme.index("\n", begin) + 1
    end = readme.index("<!-- fields:end -->")
    assert readme[start:end] == markdown_table(DEFAULT_REGISTRY)


def test_pmacct_primitives_match_the_registry() -> None:
    deploy = ROOT / "deploy" / "pmacct"
    assert (deploy / "primitives-ipfix.lst").read_text() == pmacct_primitives(DEFAULT_REGISTRY)
    assert (deploy / "primitives-netflow9.lst").read_text() == pmacct_primitives(
        DEFAULT_REGISTRY, netflow9=True)


def test_nfacctd_configs_match_the_registry() -> None:
    from ipfix.fields import nfacctd_config

    deploy = ROOT / "deploy" / "pmacct"
    assert (deploy / "nfacctd-ipfix.conf").read_text() == nfacctd_config(DEFAULT_REGISTRY)
    assert (deploy / "nfacctd-netflow9.conf").read_text() == nfacctd_config(
        DEFAULT_REGISTRY, netflow9=True)
