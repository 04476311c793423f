"""The front-end node agent (前置机): business DB -> front-end DB -> central exchange -> subscribers.

Where things live:
- ``config``: the node's config file (written by Ansible from the inventory).
- ``store``: the front-end database: mirror of published tables, outbox, cursors, heartbeats.
- ``sources``: reading the department's business database (PostgreSQL, MySQL/MariaDB).
- ``extract`` (hop 1), ``push`` (hop 2), ``pull`` (hop 3), ``full_sync`` (initial load);
  ``catalog`` (the resource's fields), ``wire`` (rows as the exchange wants them).
- ``exchange_client``: the mutual-TLS client of the central exchange.
- ``agent``: the loops that run each hop; ``state``: what the agent knows about itself;
  ``errors``: the conditions a hop reports; ``metrics`` and ``health``: /metrics, /healthz and
  the reconciliation tallies (``tally``, ``key_ranges``).
- ``main``: the process (`gdx node run`); ``cli``: the ``gdx node`` commands.
"""
