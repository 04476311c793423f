"""The front-end database role: PostgreSQL for local use only, the agent's role by peer
authentication, memory settings, and a nightly backup that restores and keeps what it should."""

from __future__ import annotations

DB = "gdx_frontend"
testinfra_hosts = ["gdx-db-node"]  # through the scenario's connection (podman exec)


def sql(host, query: str, user: str = "gdx"):
    return host.run(f'runuser -u {user} -- psql -d {DB} -XAtc "{query}"')


def test_postgresql_runs_and_listens_on_loopback_only(host):
    unit = host.service("postgresql@15-main")
    assert unit.is_running
    assert unit.is_enabled
    assert host.socket("tcp://127.0.0.1:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening
    listening = [str(s) for s in host.socket.get_listening_sockets() if s.endswith(":5432")]
    assert all(("127.0.0.1" in s or "::1" in s) for s in listening), listening


def test_memory_settings_are_applied(host):
    assert sql(host, "SHOW shared_buffers", user="postgres").stdout.strip() == "64MB"
    assert sql(host, "SHOW effective_cache_size", user="postgres").stdout.strip() == "256MB"


def test_the_agent_logs_in_by_peer_and_nobody_else_does(host):
    assert sql(host, "SELECT current_user").stdout.strip() == "gdx"
    refused = sql(host, "SELECT 1", user="nobody")
    assert refused.rc != 0
    assert "no pg_hba.conf entry" in refused.stderr or "Peer authentication failed" in refused.stderr
    hba = host.file("/etc/postgresql/15/main/pg_hba.conf")
    assert (hba.user, hba.group, hba.mode) == ("postgres", "postgres", 0o640)
    assert "0.0.0.0/0" not in hba.content_string


def test_the_backup_timer_is_active(host):
    timer = host.service("gdx-frontend-backup.timer")
    assert timer.is_enabled
    assert timer.is_running
    backups = host.file("/var/backups/gdx")
    assert (backups.user, backups.mode) == ("root", 0o700)


def test_a_backup_restores_what_was_there(host):
    assert (
        sql(host, "DROP TABLE IF EXISTS marker; CREATE TABLE marker (v text); INSERT INTO marker VALUES ('before')").rc
        == 0
    )
    host.check_output("systemctl start gdx-frontend-backup.service")
    dump = host.check_output("ls -1t /var/backups/gdx/gdx_frontend-*.dump | head -1")
    assert host.file(dump).mode == 0o600
    assert sql(host, "DROP TABLE marker").rc == 0
    restored = host.run(f"gdx-frontend-restore {dump}")
    assert restored.rc == 0, restored.stderr
    assert sql(host, "SELECT v FROM marker").stdout.strip() == "before"
    owner = sql(host, "SELECT tableowner FROM pg_tables WHERE tablename = 'marker'").stdout.strip()
    assert owner == "gdx"
    metrics = host.file("/var/lib/prometheus/node-exporter/gdx_frontend_backup.prom").content_string
    assert "gdx_frontend_backup_last_success_timestamp_seconds" in metrics


def backup_metric(host, name):
    prom = "/var/lib/prometheus/node-exporter/gdx_frontend_backup.prom"
    return host.check_output(f"awk '$1 == \"{name}\" {{print $2}}' {prom}")


def test_every_dump_is_copied_off_the_node_and_a_failed_copy_shows(host):
    host.check_output("systemctl start gdx-frontend-backup.service")
    local = set(host.check_output("ls -1 /var/backups/gdx").split())
    offsite = set(host.check_output("ls -1 /srv/offsite").split())
    assert local <= offsite, (local, offsite)
    copied = backup_metric(host, "gdx_frontend_backup_copied_timestamp_seconds")
    assert int(copied) > 0
    # The destination gone (an unmounted share): the unit fails, the copy's time stays where it was.
    host.check_output("mv /srv/offsite /srv/offsite.away")
    host.check_output("sleep 1")  # the next dump's second
    try:
        failed = host.run("systemctl start gdx-frontend-backup.service")
        assert failed.rc != 0
        assert host.check_output("systemctl is-failed gdx-frontend-backup.service") == "failed"
        after = backup_metric(host, "gdx_frontend_backup_copied_timestamp_seconds")
        assert after == copied, "the age alert fires from the last good copy"
        dumped = backup_metric(host, "gdx_frontend_backup_last_success_timestamp_seconds")
        assert int(dumped) > int(copied), "the dump itself was written and counted"
        logged = host.check_output("journalctl -u gdx-frontend-backup.service -n 20 --no-pager")
        assert "is its file system mounted?" in logged
    finally:
        host.check_output("mv /srv/offsite.away /srv/offsite")
        host.run("systemctl reset-failed gdx-frontend-backup.service")


def test_retention_drops_old_dumps_but_keeps_the_newest(host):
    host.check_output("rm -f /var/backups/gdx/*.dump")
    for days in (30, 20, 10, 3):
        host.check_output(f"touch -d '{days} days ago' /var/backups/gdx/gdx_frontend-old{days:02d}.dump")
    host.check_output("systemctl start gdx-frontend-backup.service")
    left = sorted(host.check_output("ls -1 /var/backups/gdx").split())
    # keep_days 7: the 10, 20 and 30 day old dumps go; the 3 day old one and today's stay.
    assert len(left) == 2, left
    assert "gdx_frontend-old03.dump" in left


def test_retention_never_empties_the_folder(host):
    host.check_output("rm -f /var/backups/gdx/*.dump")
    for days in (40, 30):
        host.check_output(f"touch -d '{days} days ago' /var/backups/gdx/gdx_frontend-old{days:02d}.dump")
    host.check_output("systemctl start gdx-frontend-backup.service")
    left = sorted(host.check_output("ls -1 /var/backups/gdx").split())
    # keep_min 2: today's dump and the newest old one are kept although it is past keep_days.
    assert len(left) == 2, left
    assert "gdx_frontend-old30.dump" in left


def test_a_restore_of_a_missing_file_says_how_to_use_it(host):
    result = host.run("gdx-frontend-restore /nonexistent.dump")
    assert result.rc == 2
    assert "usage: gdx-frontend-restore DUMP" in result.stderr
