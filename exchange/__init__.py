"""The central exchange service: catalog, grants, share requests, the change log, disputes, audit.

- ``app``: the ASGI app (create_app wires the routes, the pool, the registry, the metrics);
  ``server``: uvicorn with mutual TLS; ``cli``: ``gdx exchange`` and ``gdx audit``.
- ``routes/``: the HTTP API, one module per subject.
- The data layer: ``pool`` (connections), ``change_log`` (staging, numbering, pages of changes),
  ``transitions`` (share requests and disputes opened and moved, audited), ``resources``
  (catalog entries), ``audit`` (the hash-chained trail), ``registry`` (departments).
- Checks at the edge: ``identity`` (who calls), ``access`` (what they may read), ``push_body``
  (the fast reader of pushed batches), ``strict_json``, ``limits``; ``refusals`` and ``errors``
  give every refusal one shape and an audit entry.
- ``migrations/``: the versioned schema, applied by ``migrate``.
"""
