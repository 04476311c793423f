"""The whole platform on one machine (`make up`): the central exchange from the local stack's
manifests under podman, departments' front-end nodes as systemd containers provisioned by the real
playbooks, business databases with realistic sample data, Prometheus and Alertmanager."""
