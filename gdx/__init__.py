"""GDX: deployment and operations bundle for a government data sharing and exchange platform.

This package is the shared base: what the exchange, the front-end agent, the monitoring, the
Pulumi program and the local platform all import, and which imports none of them.

- ``protocol``: the wire protocol (catalog entries, change batches, grants, heartbeats).
- ``fields``: field and key checks (resident ID, USCC, canonical forms).
- ``sharing``: what a node shares (business database, publications, subscriptions).
- ``inventory``: the one inventory (Ansible, the exchange's registry, the monitoring's targets).
- ``pki``: the platform CA.  ``peer_tls``: the client-certificate TLS both servers use.
- ``workdays``: Beijing time and working days.  ``reconcile``: tallies over key ranges.
- ``aio``, ``logs``, ``terminal``: process helpers, structured logs, what commands print.
- ``cli``: the ``gdx`` command, mounting each package's commands (their ``cli.py``).
"""

__version__ = "0.1.0"
