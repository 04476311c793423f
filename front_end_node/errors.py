"""Conditions the agent's hops report rather than crash on."""

from __future__ import annotations


class Waiting(Exception):
    """Not an error: a hop cannot start yet (no grant, resource not in the catalog); the message says why."""


class Withdrawn(Waiting):
    """The subscription's grant was revoked, suspended or has expired: the hop stops, and the rows
    held are kept frozen or purged as the grant says, until the grant lives again."""

    def __init__(self, message: str, status: str, rows: str) -> None:
        super().__init__(message)
        self.status = status  # revoked | suspended | expired
        self.rows = rows  # kept | purged
