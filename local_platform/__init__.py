"""The whole platform on one machine (`make up`): the central exchange from the local stack's
manifests under podman, departments' front-end nodes as systemd containers provisioned by the real
playbooks, business databases with realistic sample data, Prometheus and Alertmanager.

- ``up``: the life cycle (up, down, status); ``cli``: ``gdx platform``; ``preflight``: what must hold first.
- ``topology``: who shares what; ``sample_catalog`` (+ ``.yml``) and ``sample_data``: the registers
  as catalog entries and rows (the tests and benchmarks use them too); ``catalog``: registering them.
- ``podman``: the local stack under `podman kube play`; ``nodes``: front-end node containers;
  ``business``: the registers' databases; ``inventory`` and ``ansible``: the inventory and site.yml.
- ``prometheus``, ``processes``, ``load``, ``checks``, ``state``: monitoring, helper processes, the
  load generator, table comparisons, and what is kept in build/local.
"""
