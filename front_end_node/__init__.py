"""The front-end node agent (前置机): business DB -> front-end DB -> central exchange -> subscribers.

Where things live:
- ``config``: the node's config file (written by Ansible from the inventory).
- ``store``: the front-end database: mirror of published tables, outbox, cursors, heartbeats.
- ``sources``: reading the department's business database (PostgreSQL, MySQL/MariaDB).
- ``extract`` (hop 1), ``push`` (hop 2), ``pull`` (hop 3), ``full_sync`` (initial load).
- ``exchange_client``: the mutual-TLS client of the central exchange.
- ``health``: /healthz and /metrics.  ``agent``: the long-running process that ties them together.
"""
