"""The alert and recording rules (monitoring/rules/*.yml), as a Prometheus is given them.

Every alert's runbook_url is the runbook site followed by a page of docs/runbooks/ (the alert's
name, or its family's). One setting, the base URL (``runbook_base``), moves every link: an
on-premises operator points it at a copy of docs/runbooks/ the administrators can reach. The
files in the repository are written with the default base, so that promtool checks and tests
them as they are; a test keeps every link in that one form.
"""

from __future__ import annotations

from pathlib import Path

import yaml

RULES_DIR = Path(__file__).resolve().parent / "rules"
RULE_FILES = ("alerts.yml", "records.yml")
DEFAULT_RUNBOOK_BASE = "https://github.com/gdx-platform/gdx/blob/main/docs/runbooks"


def runbook_url(page: str, base: str = DEFAULT_RUNBOOK_BASE) -> str:
    """The link to a page of docs/runbooks/ (``GdxNodeDown.md``) on the runbook site at ``base``."""
    return f"{base.rstrip('/')}/{page}"


def runbook_page(url: str) -> str:
    """The page a link of the rule files points to (they are written with the default base)."""
    return url.removeprefix(DEFAULT_RUNBOOK_BASE + "/")


def rule_texts(runbook_base: str = DEFAULT_RUNBOOK_BASE) -> dict[str, str]:
    """The rule files by name, every alert's runbook_url under ``runbook_base``."""
    texts = {name: (RULES_DIR / name).read_text(encoding="utf-8") for name in RULE_FILES}
    if runbook_base == DEFAULT_RUNBOOK_BASE:
        return texts
    return {name: _with_runbooks(text, runbook_base) for name, text in texts.items()}


def rule_groups(runbook_base: str = DEFAULT_RUNBOOK_BASE) -> list[dict[str, object]]:
    """Every group of every file (a PrometheusRule's spec.groups)."""
    return [group for text in rule_texts(runbook_base).values() for group in yaml.safe_load(text)["groups"]]


def _with_runbooks(text: str, base: str) -> str:
    document = yaml.safe_load(text)
    for group in document["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                annotations = rule["annotations"]
                annotations["runbook_url"] = runbook_url(runbook_page(annotations["runbook_url"]), base)
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=120)
