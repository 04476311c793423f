"""Files of resources of format `file` (attachments): named by the SHA-256 of their bytes, their type
told by their bytes. Protocol code: the provider's agent checks a file's type before it leaves the
department, and the exchange checks it again when the file arrives, by the same rule."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import puremagic

ANY_TYPE = "application/octet-stream"
# Enough of a file to tell its type by (an OOXML document names its parts in its first entries).
SNIFF_BYTES = 64 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def media_type_of(head: bytes) -> str:
    """The media type a file's first bytes tell (application/octet-stream when they tell none)."""
    if not head:
        return ANY_TYPE
    try:
        return str(puremagic.from_string(head[:SNIFF_BYTES], mime=True)) or ANY_TYPE
    except puremagic.PureError:
        return ANY_TYPE


def type_problem(data_head: bytes, allowed: Sequence[str]) -> tuple[str, str | None]:
    """The file's media type, and why the resource does not take it (None: it does)."""
    media_type = media_type_of(data_head)
    if not data_head:
        return media_type, "the file is empty"
    if ANY_TYPE in allowed or media_type in allowed:
        return media_type, None
    told = "of a type its bytes do not tell" if media_type == ANY_TYPE else media_type
    return media_type, f"the file is {told}; the resource takes {', '.join(allowed)} (its catalog's file_types)"
