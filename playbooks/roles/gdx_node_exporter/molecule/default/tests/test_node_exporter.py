"""Debian's node_exporter with the textfile collector and the GDX units' states."""

from __future__ import annotations

import re
import time
import urllib.request


def scrape(host) -> str:
    address = host.interface("eth0").addresses[0]
    with urllib.request.urlopen(f"http://{address}:9100/metrics", timeout=5) as response:
        return response.read().decode()


def test_node_exporter_runs_and_serves_metrics(host):
    unit = host.service("prometheus-node-exporter")
    assert unit.is_running
    assert unit.is_enabled
    assert host.socket("tcp://0.0.0.0:9100").is_listening
    assert "node_filesystem_avail_bytes" in scrape(host)


def test_textfile_metrics_are_exported(host):
    host.check_output(
        "printf 'gdx_frontend_backup_last_success_timestamp_seconds 1.7e9\\n' "
        "> /var/lib/prometheus/node-exporter/gdx_test.prom"
    )
    deadline = time.monotonic() + 10
    while "gdx_frontend_backup_last_success_timestamp_seconds 1.7e+09" not in (text := scrape(host)):
        assert time.monotonic() < deadline, "the textfile metric never appeared"
        time.sleep(0.5)
    assert 'node_textfile_mtime_seconds{file="/var/lib/prometheus/node-exporter/gdx_test.prom"}' in text


def test_only_the_chosen_systemd_units_are_exported(host):
    text = scrape(host)
    assert re.search(r'node_systemd_unit_state\{name="ssh.service",state="active",type="\w+"\} 1', text)
    assert 'name="cron.service"' not in text
