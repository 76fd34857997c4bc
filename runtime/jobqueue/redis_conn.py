"""Redis clients built from config: URL or addr, ACL user, TLS, timeouts, pool, retries."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Iterable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobqueue.config import RedisConfig, redact_url
from jobqueue.errors import RedisUnavailable

log = logging.getLogger("jobqueue.redis")

try:
    from redis.connection import HiredisRespSerializer
    from redis.utils import HIREDIS_AVAILABLE
except ImportError:  # pragma: no cover - older redis-py
    HIREDIS_AVAILABLE = False


class _HiredisPacking:
    """redis-py's asyncio connections pack commands in pure Python; its sync ones use hiredis.
    The worker sends long EVALSHA argument lists on every round trip, so pack them in C too."""

    _packer = HiredisRespSerializer() if HIREDIS_AVAILABLE else None

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._packer.pack(*args)  # type: ignore[union-attr,no-any-return]


class _DirectWrite(Connection):
    """redis-py sends every command through ``asyncio.wait_for`` when a socket timeout is set:
    a new Task and a timer per command, ~40% of a one-command round trip's client CPU here. The
    kernel takes a command whole almost always, so write it directly and wait (with the write
    timeout) only when something is left in the transport's buffer. Anything unusual (not
    connected, a closing transport) takes redis-py's own path."""

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        writer = self._writer
        if not self.socket_timeout or writer is None or not self.is_connected:
            return await super().send_packed_command(command, check_health)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
            writer = self._writer
            if writer is None or not self.is_connected:
                return await super().send_packed_command(command, False)
        transport = writer.transport
        if transport.is_closing():
            return await super().send_packed_command(command, False)
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            writer.writelines(command)
            if not transport.get_write_buffer_size() and not transport.is_closing():
                return None
            await asyncio.wait_for(writer.drain(), self.socket_timeout)
        except TimeoutError:
            transport.abort()  # a close() would wait to flush the unsent rest, which Redis does not take
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as err:
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to socket: {err}") from err
        except BaseException:
            await self.disconnect(nowait=True)
            raise
        return None


class FastConnection(_DirectWrite, _HiredisPacking, Connection):
    pass


class FastSSLConnection(_DirectWrite, _HiredisPacking, SSLConnection):
    pass


def describe(cfg: RedisConfig) -> str:
    """Where we connect, safe to log (password masked)."""
    if cfg.url:
        return redact_url(cfg.url)
    scheme = "rediss" if cfg.tls.enabled else "redis"
    return f"{scheme}://{cfg.addr}/{cfg.db}"


def connection_kwargs(cfg: RedisConfig) -> dict[str, Any]:
    """Keyword arguments for a redis-py connection pool (also used by the operator)."""
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": cfg.dial_timeout.total_seconds(),
        "socket_timeout": max(cfg.read_timeout, cfg.write_timeout).total_seconds(),
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), cfg.max_retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "decode_responses": False,
        "client_name": "jobqueue",
    }
    tls = cfg.tls.enabled or (cfg.url or "").startswith("rediss://")
    if cfg.url:
        kwargs.update(parse_url(cfg.url))
    else:
        host, _, port = cfg.addr.rpartition(":")
        kwargs.update(host=host, port=int(port), db=cfg.db)
    if cfg.username and "username" not in kwargs:
        kwargs["username"] = cfg.username
    if cfg.password is not None and "password" not in kwargs:
        kwargs["password"] = cfg.password.get_secret_value()
    kwargs.setdefault("connection_class", FastConnection if HIREDIS_AVAILABLE else Connection)  # unix:// keeps its own
    if tls:
        kwargs["connection_class"] = FastSSLConnection if HIREDIS_AVAILABLE else SSLConnection
        kwargs["ssl_ca_certs"] = cfg.tls.ca_file
        kwargs["ssl_certfile"] = cfg.tls.cert_file
        kwargs["ssl_keyfile"] = cfg.tls.key_file
        kwargs["ssl_cert_reqs"] = ssl.CERT_NONE if cfg.tls.insecure_skip_verify else ssl.CERT_REQUIRED
        kwargs["ssl_check_hostname"] = not cfg.tls.insecure_skip_verify
    return kwargs


def make_client(cfg: RedisConfig, *, blocking: bool = False) -> Redis:
    """A client with its own pool. ``blocking`` clients serve BLPOP waits: one connection, no read timeout."""
    kwargs = connection_kwargs(cfg)
    if blocking:
        kwargs["socket_timeout"] = None
        size = 2
    else:
        size = max(cfg.pool_size_multiplier * (os.cpu_count() or 1), 4)
    pool = BlockingConnectionPool(max_connections=size, timeout=cfg.dial_timeout.total_seconds(), **kwargs)
    return Redis.from_pool(pool)


async def check(client: Redis, cfg: RedisConfig) -> None:
    """PING, turning the usual start-up failures into one clear sentence."""
    where = describe(cfg)
    try:
        await client.ping()
    except AuthenticationError as err:
        raise RedisUnavailable(_auth_message(cfg, where, err)) from None
    except ssl.SSLError as err:
        raise RedisUnavailable(f"TLS handshake with Redis at {where} failed: {err}") from None
    except (RedisConnectionError, RedisTimeoutError, OSError) as err:
        cause = err.__cause__ or err.__context__
        if isinstance(cause, ssl.SSLError) or "SSL" in str(err) or "certificate" in str(err):
            raise RedisUnavailable(f"TLS handshake with Redis at {where} failed: {err}") from None
        hint = ""
        tls = cfg.tls.enabled or (cfg.url or "").startswith("rediss://")
        if not tls and ("reset by peer" in str(err) or "Connection closed" in str(err)):
            hint = " (if this Redis only speaks TLS, use a rediss:// URL or redis.tls.enabled)"
        raise RedisUnavailable(f"cannot reach Redis at {where}: {err}{hint}", retryable=True) from None
    except ResponseError as err:
        if "NOAUTH" in str(err) or "HELLO must be called" in str(err):
            raise RedisUnavailable(_auth_message(cfg, where, err)) from None
        raise RedisUnavailable(f"Redis at {where} answered with an error: {err}") from None


def _auth_message(cfg: RedisConfig, where: str, err: Exception) -> str:
    given = cfg.password is not None or "@" in (cfg.url or "")
    if not given:
        return (
            f"Redis at {where} requires authentication and no credentials were given "
            "(set redis.password / REDIS_PASSWORD, redis.username, or user:password@ in redis.url)"
        )
    return f"Redis at {where} refused the credentials: {err}"


async def wait_until_reachable(client: Redis, cfg: RedisConfig, stop: asyncio.Event | None = None) -> None:
    """``check`` at start-up, waiting up to ``redis.connect_wait`` for a Redis that is not up yet
    (a pod starting before Redis should not crash-loop); credential and TLS errors fail at once."""
    deadline = time.monotonic() + cfg.connect_wait.total_seconds()
    delay = 0.1
    while True:
        try:
            await check(client, cfg)
            return
        except RedisUnavailable as err:
            if not err.retryable or time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                raise
            log.warning("waiting for Redis", extra={"error": str(err), "retry_in_s": delay})
        try:
            await asyncio.wait_for(stop.wait(), delay) if stop is not None else await asyncio.sleep(delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, 2.0)
