"""Conditions the agent's hops report rather than crash on."""

from __future__ import annotations


class Waiting(Exception):
    """Not an error: a hop cannot start yet (no grant, resource not in the catalog); the message says why."""
