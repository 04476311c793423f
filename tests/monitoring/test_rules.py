"""Alert and recording rules, their promtool unit tests, and Alertmanager's routes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring import rules

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "rules"
ALERTMANAGER = ROOT / "monitoring" / "alertmanager" / "alertmanager.yml"


def alerts() -> list[dict]:
    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=RULES)


def test_promtool_accepts_the_rules() -> None:
    done = run("promtool", "check", "rules", "alerts.yml", "records.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    # promtool runs a file's test groups one after another: each file's groups are split in two, and
    # the halves run side by side (the longest file took most of this test's time).
    halves = []
    for path in sorted((RULES / "tests").glob("*.test.yml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec["rule_files"] = [str((path.parent / name).resolve()) for name in spec["rule_files"]]
        groups = spec.pop("tests")
        for part, chosen in enumerate((groups[::2], groups[1::2])):
            if chosen:
                half = tmp_path / f"{path.stem}.{part}.yml"
                half.write_text(yaml.safe_dump({**spec, "tests": chosen}, allow_unicode=True), encoding="utf-8")
                halves.append(half)
    running = [subprocess.Popen(["promtool", "test", "rules", str(h)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for h in halves]  # fmt: skip
    outputs = [process.communicate()[0] for process in running]
    failed = [(h.name, out) for h, out, process in zip(halves, outputs, running, strict=True) if process.returncode]
    assert len(halves) >= 2
    assert not failed, failed


def test_every_alert_is_named_and_annotated_with_a_runbook_in_the_repo() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names))
    for rule in alerts():
        assert re.fullmatch(r"(?:[A-Z][a-z0-9]+)+", rule["alert"]), f"{rule['alert']}: not CamelCase"
        assert rule["labels"]["severity"] in {"critical", "warning", "none"}, rule["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(key), f"{rule['alert']}: no {key}"
        # One form for every link, from one setting: the operator's base URL replaces the default.
        url = rule["annotations"]["runbook_url"]
        page = rules.runbook_page(url)
        assert url == rules.runbook_url(page), f"{rule['alert']}: {url} is not on the runbook site"
        assert "/" not in page, f"{rule['alert']}: {url} is not a page of docs/runbooks"
        assert (ROOT / "docs" / "runbooks" / page).is_file(), f"{rule['alert']}: runbook {page} is missing"


def test_an_operators_runbook_site_replaces_every_link_and_nothing_else(tmp_path: Path) -> None:
    base = "https://ops.example.gov.cn/gdx/runbooks/"
    moved = rules.rule_texts(base)
    for name, text in moved.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    done = subprocess.run(["promtool", "check", "rules", *moved], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    before, after = yaml.safe_load(rules.rule_texts()["alerts.yml"]), yaml.safe_load(moved["alerts.yml"])
    for old_group, new_group in zip(before["groups"], after["groups"], strict=True):
        for old, new in zip(old_group["rules"], new_group["rules"], strict=True):
            if "alert" in old:
                page = rules.runbook_page(old["annotations"].pop("runbook_url"))
                assert new["annotations"].pop("runbook_url") == f"{base}{page}"
            assert new == old


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """The unit tests cover each alert both ways (the Watchdog only fires), with annotations asserted."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in (RULES / "tests").glob("*.test.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                if case["exp_alerts"]:
                    firing.add(case["alertname"])
                    assert all(set(a["exp_annotations"]) >= {"summary", "description", "runbook_url"}
                               for a in case["exp_alerts"]), case["alertname"]  # fmt: skip
                else:
                    quiet.add(case["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet - {"GdxWatchdog"} == set(), "alerts never shown quiet"


def test_alertmanager_config_is_valid() -> None:
    done = subprocess.run(["amtool", "check-config", str(ALERTMANAGER)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=GdxWatchdog", "severity=none"], "deadmans-switch"),
        (["alertname=GdxNodeDown", "severity=critical", "department=zjg-gaj"], "platform-oncall,zjg-data-bureau"),
        (["alertname=GdxShareRequestsOverdue", "severity=warning", "department=nx-gat"], "ningxia-data-bureau"),
        (["alertname=GdxExchangeUnreachable", "severity=critical", "department=central"], "platform-oncall"),
        (["alertname=GdxHopLagHigh", "severity=warning", "department=other-dept"], "platform-tickets"),
    ],
)
def test_alertmanager_routes_by_severity_and_department(labels: list[str], receivers: str) -> None:
    done = subprocess.run(
        [
            "amtool",
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER}",
            f"--verify.receivers={receivers}",
            *labels,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
