"""The platform CA."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from gdx.cli import app
from gdx.pki import PkiError, Role, identity_of, init_ca, verify_issued_by


def test_ca_init_and_issue_from_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["ca", "init", "--dir", str(tmp_path)]).exit_code == 0
    result = runner.invoke(app, ["ca", "issue", "zjg-gaj", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "zjg-gaj.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((tmp_path / "zjg-gaj.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    verify_issued_by(cert, ca)
    assert identity_of(cert).role is Role.DEPARTMENT
    assert identity_of(cert).name == "zjg-gaj"

    staff = runner.invoke(app, ["ca", "issue", "bob", "--role", "auditor", "--dir", str(tmp_path)])
    assert staff.exit_code == 0
    assert identity_of(x509.load_pem_x509_certificate((tmp_path / "bob.crt").read_bytes())).role is Role.AUDITOR


def test_the_ca_is_never_overwritten(tmp_path: Path) -> None:
    init_ca(tmp_path)
    with pytest.raises(PkiError, match="already holds a CA"):
        init_ca(tmp_path)
    result = CliRunner().invoke(app, ["ca", "issue", "x", "--dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "gdx ca init" in result.output
