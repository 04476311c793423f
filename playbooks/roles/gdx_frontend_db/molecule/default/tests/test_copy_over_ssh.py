"""The off-node copy of the dumps over SSH: rsync with the operator's key to an account on
another host, its host key checked strictly; a changed host key stops the copy and says so."""

from __future__ import annotations

testinfra_hosts = ["gdx-db-node-ssh"]


def copied_at(host):
    prom = "/var/lib/prometheus/node-exporter/gdx_frontend_backup.prom"
    return host.check_output(f"awk '$1 == \"gdx_frontend_backup_copied_timestamp_seconds\" {{print $2}}' {prom}")


def test_every_dump_reaches_the_backup_account_over_ssh(host):
    host.check_output("systemctl start gdx-frontend-backup.service")
    local = set(host.check_output("ls -1 /var/backups/gdx").split())
    remote = set(host.check_output("runuser -u offsite -- ls -1 /srv/offsite-ssh").split())
    assert local, "a dump was written"
    assert local <= remote, (local, remote)
    assert int(copied_at(host)) > 0
    logged = host.check_output("journalctl -u gdx-frontend-backup.service -n 20 --no-pager")
    assert "copied to offsite@127.0.0.1:/srv/offsite-ssh" in logged


def test_a_destination_whose_host_key_changed_is_refused(host):
    before = copied_at(host)
    known = "/etc/gdx/backup-copy.known_hosts"
    host.check_output(f"cp {known} {known}.good")
    # Another host's key where the destination's should be: a man in the middle, or a rebuilt server.
    host.check_output("rm -f /tmp/other /tmp/other.pub && ssh-keygen -t ed25519 -N '' -q -f /tmp/other")
    other = host.check_output("cut -d' ' -f1,2 /tmp/other.pub")
    host.check_output(f"echo '127.0.0.1 {other}' > {known}")
    host.check_output("sleep 1")
    try:
        failed = host.run("systemctl start gdx-frontend-backup.service")
        assert failed.rc != 0
        logged = host.check_output("journalctl -u gdx-frontend-backup.service -n 30 --no-pager")
        assert "Host key verification failed" in logged or "HOST IDENTIFICATION HAS CHANGED" in logged, logged
        assert copied_at(host) == before, "the age alert fires from the last good copy"
    finally:
        host.check_output(f"mv {known}.good {known}")
        host.run("systemctl reset-failed gdx-frontend-backup.service")
