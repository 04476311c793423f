"""The base role on a systemd Debian 12 host: time, sshd, the service user, journald."""


def test_chrony_runs_measure_only_with_the_configured_server(host):
    chrony = host.service("chrony")
    assert chrony.is_running
    assert chrony.is_enabled
    assert "server ntp.example.gov.cn iburst" in host.file("/etc/chrony/chrony.conf").content_string
    # -x: in a container chrony may not set the clock, it only measures.
    assert "-x" in host.file("/etc/systemd/system/chrony.service.d/gdx-measure-only.conf").content_string
    assert all("-x" in p.args.split() for p in host.process.filter(comm="chronyd"))


def test_sshd_refuses_passwords_and_root_passwords(host):
    effective = host.run("sshd -T")
    assert effective.rc == 0, effective.stderr
    settings = dict(line.split(" ", 1) for line in effective.stdout.splitlines() if " " in line)
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["permitrootlogin"] == "without-password"
    assert settings["x11forwarding"] == "no"
    assert settings["allowtcpforwarding"] == "no"
    assert settings["maxauthtries"] == "3"
    assert settings["allowgroups"] == "gdx-admins"
    assert host.service("ssh").is_running
    assert host.socket("tcp://0.0.0.0:22").is_listening


def test_the_service_user_cannot_log_in(host):
    user = host.user("gdx")
    assert user.exists
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/var/lib/gdx"
    assert host.file("/etc/shadow").contains("^gdx:!:")
    home = host.file("/var/lib/gdx")
    assert (home.user, home.group, home.mode) == ("gdx", "gdx", 0o750)


def test_the_journal_is_persistent_and_bounded(host):
    conf = host.file("/etc/systemd/journald.conf.d/10-gdx.conf")
    assert conf.mode == 0o644
    assert "MaxRetentionSec=180day" in conf.content_string
    assert "SystemMaxUse=2G" in conf.content_string
    assert host.file("/var/log/journal").is_directory
    assert host.service("systemd-journald").is_running


def test_time_zone_is_beijing_time(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Asia/Shanghai"
    assert host.run("date +%z").stdout.strip() == "+0800"
