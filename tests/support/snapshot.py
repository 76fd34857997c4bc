"""Dump every key of a test Redis as plain Python values, to assert a script's whole effect."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis


def _s(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


async def snapshot(redis: Redis, skip: tuple[str, ...] = ("seq",)) -> dict[str, Any]:
    """{key: value}: lists as lists, hashes as dicts, zsets as {member: score}, strings as str."""
    out: dict[str, Any] = {}
    for raw in await redis.keys("*"):
        key = _s(raw)
        if key.rsplit(":", 1)[-1] in skip:
            continue
        kind = _s(await redis.type(key))
        if kind == "list":
            out[key] = [_s(x) for x in await redis.lrange(key, 0, -1)]
        elif kind == "hash":
            out[key] = {_s(k): _s(v) for k, v in (await redis.hgetall(key)).items()}
        elif kind == "zset":
            out[key] = {_s(m): int(s) for m, s in await redis.zrange(key, 0, -1, withscores=True)}
        else:
            out[key] = _s(await redis.get(key))
    return out
