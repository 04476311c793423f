"""Shared by the testinfra verifiers of every molecule scenario: when a check fails, the failing
host's recent journal for the GDX units is attached to the report, so the cause is on screen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

UNITS = (
    "gdx-agent",
    "postgresql@15-main",
    "prometheus-node-exporter",
    "nftables",
    "chrony",
    "ssh",
    "gdx-frontend-backup",
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call" and report.failed:
        host = getattr(item, "funcargs", {}).get("host")
        if host is not None:
            units = " ".join(f"-u {unit}" for unit in UNITS)
            journal = host.run(f"journalctl --no-pager -n 60 -o short-iso {units}")
            report.sections.append(("journalctl on the host", journal.stdout or journal.stderr))
    return report
