"""What the exchange says is shared: the providers of the resources and the live grants."""

from __future__ import annotations

from dataclasses import dataclass, field

from gdx.protocol import MonitoringSummary


@dataclass(frozen=True)
class Sharing:
    """Who provides each resource, and who may read it now, from the exchange's catalog and grants:
    a subscription whose grant was revoked, suspended or has expired carries no data, so nothing
    is expected of it (no stalled hop, no copy to compare)."""

    providers: dict[str, str] = field(default_factory=dict)
    subscribers: dict[str, frozenset[str]] = field(default_factory=dict)

    def granted(self, code: str, department: str) -> bool:
        return code in self.providers and department in self.subscribers.get(code, frozenset())


def sharing_of(summary: MonitoringSummary | None) -> Sharing:
    if summary is None:
        return Sharing()
    return Sharing(
        {r.code: r.provider for r in summary.resources},
        {r.code: frozenset(r.subscribers) for r in summary.resources},
    )
