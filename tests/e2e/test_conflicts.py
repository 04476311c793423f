"""make up's preflight against what podman holds: a container under one of its names that it did not
make (say, one someone else named gdx-fe-wjw) stops it with the command that clears the way; its own does not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local_platform.nodes import BASE_IMAGE, conflicts
from local_platform.podman import podman
from local_platform.topology import LABEL


@pytest.fixture
def containers() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    if made:
        podman("rm", "-f", "-t", "0", *made, check=False)


@pytest.mark.slow  # needs the base image: make base-image
def test_a_container_make_up_did_not_make_is_named_with_the_way_out(containers: list[str]) -> None:
    stranger, ours = "gdx-preflight-stranger", "gdx-preflight-ours"
    for name, labels in ((stranger, []), (ours, ["--label", LABEL])):
        podman("create", "--name", name, *labels, BASE_IMAGE, "true")
        containers.append(name)
    found = conflicts([stranger, ours, "gdx-preflight-absent"])
    assert found == [
        f"a container named '{stranger}' exists and make up did not make it: remove it (podman rm -f {stranger})"
    ]
