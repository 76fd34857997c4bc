"""Support for the operator tier: the KMock emulator subclass, the login handler, polling helpers.

KMock 0.8 facts this relies on (see issue 4): kopf is pointed at it with a login handler; its
bundled discovery is loaded and the JobQueue resource declared with its subresources (or kopf
waits silently); it does not stamp uid/resourceVersion/generation/creationTimestamp or honour
generateName, which kopf's finalizer JSON-patch and Events need, so ``Emulator`` below does; it
has no garbage collection and no label selectors; and it shares the test's event loop, so
nothing here may block.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import jsonpatch
import kmock
import kopf
from kmock._internal import aiobus, enums, rendering

import jobqueue_operator.main  # noqa: F401  (registers the operator's handlers)
from jobqueue_operator.models import GROUP, PLURAL, VERSION

NS = "ns1"
JQ = f"{GROUP}/{VERSION}/{PLURAL}"
DEPLOYMENTS = "apps/v1/deployments"
CONFIGMAPS = "v1/configmaps"
SERVICES = "v1/services"
EVENTS = "v1/events"


current_url: list[str] = []


@kopf.on.login()
def _login_to_the_emulator(**_: Any) -> kopf.ConnectionInfo:
    # Above the operator's own login (service account / kubeconfig), should a developer have one.
    return kopf.ConnectionInfo(server=current_url[-1], priority=1000)


@attrs.define(kw_only=True, weakref_slot=True, eq=False)
class RecordingBus(aiobus.Bus[Any]):
    """A KMock event bus that also keeps every event, so a watch can resume from a resourceVersion."""

    history: list[Any] = attrs.field(factory=list)

    async def put(self, *items: Any) -> None:
        self.history.extend(items)
        await super().put(*items)


def _rv(obj: Any) -> int:
    value = (obj or {}).get("metadata", {}).get("resourceVersion")
    return int(value) if isinstance(value, str) and value.isdigit() else 0


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    """KMock's emulator plus what a real API server does and kopf relies on.

    - stamps uid, creationTimestamp, generation (bumped on spec changes) and a resourceVersion
      on every write, and names objects created with generateName (kopf's Events);
    - lists carry the current resourceVersion, and a watch from it replays only later events
      (KMock replays every object as ADDED, which makes kopf process a stale copy after its own
      finalizer patch, fail the JSON-patch test and then wait for an event that never comes);
    - a failed JSON-patch "test" is a 422 Conflict-style answer, as kopf expects, not a 500.
    """

    _buses: Any = attrs.field(factory=lambda: collections.defaultdict(RecordingBus))
    _last_rv: int = attrs.field(default=0, init=False)

    def _next_rv(self) -> str:
        self._last_rv += 1
        return str(self._last_rv)

    async def _serve_list(self, request: rendering.Request) -> Any:
        async with self._lock:
            items = [
                obj.raw
                for (resource, ns, _), obj in self.objects.items()
                if resource == request.resource
                and not obj.deleted
                and (request.namespace is None or ns == request.namespace)
            ]
            return {"metadata": {"resourceVersion": str(self._last_rv)}, "items": items}

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        yield b""
        assert request.resource is not None
        bus = self._buses[request.resource]
        since = request.params.get("resourceVersion", "")

        def mine(event: Any) -> bool:
            ns = event.get("object", {}).get("metadata", {}).get("namespace")
            return request.namespace is None or ns == request.namespace

        async with self._lock:  # the same lock as writes: no event falls between replay and stream
            mark = await bus.mark()
            if since.isdigit():
                replay = [e for e in bus.history if _rv(e.get("object")) > int(since) and mine(e)]
            else:
                replay = [
                    {"type": "ADDED", "object": obj.raw}
                    for (resource, ns, _), obj in self.objects.items()
                    if resource == request.resource
                    and not obj.deleted
                    and (request.namespace is None or ns == request.namespace)
                ]
        try:
            for event in replay:
                yield event
            async for event in bus.stream(since=mark):
                if mine(event):
                    yield event
        finally:
            await bus.unmark(mark)

    async def _handle(self, request: rendering.Request) -> Any:
        data = request.data
        if request.resource is not None and request.action == enums.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            rv = self._next_rv()
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{int(rv):05d}"
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = rv
        elif request.resource is not None and request.action == enums.action.UPDATE:
            rv = self._next_rv()
            if isinstance(data, list):
                data.append({"op": "add", "path": "/metadata/resourceVersion", "value": rv})
            elif isinstance(data, dict):
                meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else None
                if meta is None:
                    meta = data["metadata"] = {}
                meta["resourceVersion"] = rv
                if request.subresource is None and "spec" in data and request.name is not None:
                    key = (request.resource, request.namespace, request.name)
                    if key in self.objects and not self.objects[key].deleted:
                        meta["generation"] = int(self.objects[key].get("metadata", {}).get("generation", 1)) + 1
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchException as err:  # a failed "test" op: a conflict
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(err)) from None


class _NotTheOperators(frozenset[asyncio.Task[object]]):
    """Tasks kopf must leave alone when it stops: everything but kopf's and the operator's own."""

    def __contains__(self, task: object) -> bool:
        coro = task.get_coro() if isinstance(task, asyncio.Task) else None
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        path = code.co_filename if code is not None else ""
        return not ("/kopf/" in path or "/jobqueue_operator/" in path)


@contextlib.asynccontextmanager
async def running_operator(k8s: Emulator) -> AsyncIterator[Emulator]:
    """The real operator (jobqueue_operator.main's registrations) watching namespace ns1."""
    current_url.append(str(k8s.url))
    stop = asyncio.Event()
    ready = asyncio.Event()
    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0.1
    tasks = await kopf.spawn_tasks(
        registry=kopf.get_default_registry(),
        settings=settings,
        standalone=True,
        namespaces=[NS],
        stop_flag=stop,
        ready_flag=ready,
    )
    # kopf.operator() cancels every task created while it ran, pytest's own fixture tasks included;
    # run_tasks with this "ignored" set stops only kopf's and the operator's tasks.
    task = asyncio.create_task(kopf.run_tasks(tasks, ignored=_NotTheOperators()))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield k8s
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        current_url.pop()


async def eventually(probe: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> Any:
    """Poll ``probe`` until it returns something truthy without raising; fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = probe()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except (AssertionError, KeyError, LookupError, TypeError, ValueError) as err:
            last = err
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
        await asyncio.sleep(every)  # poll interval of the deadline loop, not a wait for a condition


def get(k8s: kmock.KubernetesEmulator, resource: str, name: str, ns: str = NS) -> dict[str, Any] | None:
    key = (kmock.resource(resource), ns, name)
    if key not in k8s.objects or k8s.objects[key].deleted:
        return None
    raw: dict[str, Any] = k8s.objects[key].raw
    return raw


def events(k8s: kmock.KubernetesEmulator, reason: str | None = None) -> list[dict[str, Any]]:
    found = []
    for (resource, _ns, _name), obj in k8s.objects.items():
        if resource.plural == "events" and not obj.deleted and reason in (None, obj.raw.get("reason")):
            found.append(obj.raw)
    return found


_VERBS = {"LIST": "list", "WATCH": "watch", "FETCH": "get", "CREATE": "create", "UPDATE": "patch", "DELETE": "delete"}


def operator_requests(k8s: kmock.KubernetesEmulator) -> set[tuple[str, str, str]]:
    """(API group, resource[/subresource], verb) of every request kopf's session sent."""
    calls = set()
    for r in k8s._requests:
        agent = r.headers.get("User-Agent", "")
        if not agent.startswith("kopf/") or r.resource is None or r.resource.plural is None or r.action is None:
            continue
        resource = r.resource.plural + (f"/{r.subresource}" if r.subresource else "")
        calls.add((r.resource.group or "", resource, _VERBS[r.action.name]))
    return calls
