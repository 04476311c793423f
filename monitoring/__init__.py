"""The monitoring agent: node health, lag per hop, reconciliation and governance figures for the
platform administrator, with Prometheus rules, dashboards and a status page.

- ``agent``: the probe cycles (``probes``), lag from heartbeats (``lag``), the exchange's summary
  (``exchange_client``), reconciliation (``reconciler``); ``settings``: targets from the inventory.
- ``collector``: the Prometheus metrics; ``status`` and ``web``: the status page and /api/status.
- ``rules/`` and ``rules.py``: alert and recording rules with promtool tests; ``scrape``: what
  Prometheus scrapes; ``dashboards``: Grafana dashboards (grafana-foundation-sdk);
  ``alertmanager/``: routes.
- ``main``: the process (`gdx monitor run`); ``cli``: the ``gdx monitor`` commands.
"""
