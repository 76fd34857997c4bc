"""Fixtures of the operator tier: the emulated API server and the real kopf operator against it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import kmock._internal as kmock_internal
import pytest
from jq_kmock import JQ, Emulator, running_operator

from jobqueue_operator.models import KIND, SINGULAR


@pytest.fixture
async def k8s() -> AsyncIterator[Emulator]:
    emulator = Emulator()
    # load_bundled() uses a deprecated importlib API (and our warnings are errors): same file, by path.
    emulator.resources.load_path(Path(kmock_internal.__file__).parent / "resources.json.gz")
    emulator.resources[JQ] = kmock.ResourceInfo(
        kind=KIND,
        singular=SINGULAR,
        namespaced=True,
        verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
        shortnames={"jq"},
        subresources={"status", "scale"},
    )
    async with emulator, kmock.Server(emulator):
        yield emulator


@pytest.fixture
async def operator(k8s: Emulator) -> AsyncIterator[Emulator]:
    async with running_operator(k8s) as running:
        yield running
