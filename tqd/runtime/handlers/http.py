"""The ``http`` kind: POST the task's payload to a configured URL (a webhook).

The URL comes from configuration only. The request carries the payload as
its JSON body, the configured headers, ``Tqd-Task-Id``, ``Tqd-Task-Name``,
``Tqd-Attempt`` and, with a secret, ``Tqd-Signature: t=<unix time>,v1=<hex
HMAC-SHA256 of "<t>." + body>`` so the receiver can check that the call
came from tqd and is recent.

What the answer means:

* 2xx: completed; the body is the result (JSON when it parses, else text).
* 429 and 503: retry at ``Retry-After`` (or with backoff when absent), and
  hold the queue's dispatch for that long: the target is pushing back.
* other 5xx, connection errors, timeouts: retry with backoff.
* other 4xx: fail at once, unless the status is in ``retry_statuses``.
* 307 and 308 to the same scheme, host and port are followed (at most 3
  hops); every other redirect fails the task. A client cannot choose the
  URL, and a redirect must not let the target choose it either: a cross-host
  hop would carry the payload, the signature and the configured headers
  (maybe credentials) to a host nobody configured.

Every http task shares one aiohttp session whose connector bounds the open
connections per target (``[http] connections_per_host``).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import math
import os
import time
from typing import Any

import aiohttp
from yarl import URL

from tqd import __version__
from tqd.config import HttpClientConfig, HttpHandler
from tqd.errors import ConfigError
from tqd.runtime.handlers.base import TaskContext, TaskFailed
from tqd.runtime.handlers.exec import decode_output

MAX_REDIRECTS = 3
#: How long the queue is held after a 429/503 without Retry-After.
DEFAULT_HOLD = 1.0
SIGNATURE_HEADER = "Tqd-Signature"
_SNIPPET = 300


class SharedSession:
    """The one client session of every http handler, opened on first use."""

    def __init__(self, config: HttpClientConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self._config.connections_per_host
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # Nothing is stored or sent from a jar: each call is on its own.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``Tqd-Signature`` value: ``t=<timestamp>,v1=<hex HMAC-SHA256>``
    over ``timestamp + "." + body``."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date);
    None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return (url.scheme, url.host, url.port)


class HttpPost:
    """POSTs each task's payload to one configured URL (see the module docstring)."""

    def __init__(
        self, spec: HttpHandler, session: SharedSession, where: str, connect_timeout: float = 10.0
    ) -> None:
        self._url = URL(spec.url)
        self._session = session
        self._headers = {
            "User-Agent": f"tqd/{__version__}",
            **spec.headers,
            "Content-Type": "application/json",
        }
        self._secret = _secret(spec, where)
        self._timeout = aiohttp.ClientTimeout(
            total=spec.timeout, connect=min(connect_timeout, spec.timeout)
        )
        self._seconds = spec.timeout
        self._retry_statuses = frozenset(spec.retry_statuses)
        self._max_response = spec.max_response
        self._max_retry_after = spec.max_retry_after

    async def run(self, ctx: TaskContext) -> Any:
        body = ctx.raw_payload
        headers = dict(self._headers)
        headers["Tqd-Task-Id"] = ctx.task_id
        headers["Tqd-Task-Name"] = ctx.name
        headers["Tqd-Attempt"] = str(ctx.attempt)
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, str(int(time.time())), body)
        url = self._url
        session = self._session.get()
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False, timeout=self._timeout
                ) as resp:
                    if resp.status in (307, 308):
                        url = self._redirect(url, resp)
                        continue
                    return await self._answer(url, resp)
            except TimeoutError:
                raise TaskFailed(
                    f"POST {self._url} timed out after {self._seconds:g}s", kind="http_timeout"
                ) from None
            except aiohttp.ClientError as err:
                raise TaskFailed(
                    f"POST {self._url} failed: {_describe(err)}", kind="http_connect"
                ) from None
        raise TaskFailed(f"POST {self._url}: more than {MAX_REDIRECTS} redirects", retry=False,
                         kind="http_redirect")

    def _redirect(self, url: URL, resp: aiohttp.ClientResponse) -> URL:
        location = resp.headers.get("Location")
        if not location:
            raise TaskFailed(f"POST {url} answered {resp.status} without a Location",
                             retry=False, kind="http_redirect")
        target = url.join(URL(location))
        if _origin(target) != _origin(self._url):
            raise TaskFailed(
                f"POST {url} answered {resp.status} to {target.scheme}://{target.host}; "
                "redirects to another host are not followed (configure the final URL)",
                retry=False,
                kind="http_redirect",
            )
        return target

    async def _answer(self, url: URL, resp: aiohttp.ClientResponse) -> Any:
        status = resp.status
        if 200 <= status < 300:
            data = await _read_capped(resp, self._max_response)
            if data is None:
                raise TaskFailed(
                    f"POST {url}: the response is larger than max_response "
                    f"({self._max_response} bytes)",
                    retry=False,
                    kind="http_response",
                )
            return decode_output(data)
        snippet = await _snippet(resp)
        said = f"POST {url} answered {status}" + (f": {snippet}" if snippet else "")
        if status in (429, 503):
            wait = parse_retry_after(resp.headers.get("Retry-After"), time.time())
            if wait is not None:
                wait = min(wait, self._max_retry_after)
                raise TaskFailed(f"{said} (Retry-After {wait:g}s)", delay=wait, hold=wait,
                                 kind="http_status")
            raise TaskFailed(said, hold=DEFAULT_HOLD, kind="http_status")
        if 300 <= status < 400:
            raise TaskFailed(f"{said}; only 307 and 308 redirects to the same host are followed",
                             retry=False, kind="http_redirect")
        if 400 <= status < 500:
            raise TaskFailed(said, retry=status in self._retry_statuses, kind="http_status")
        raise TaskFailed(said, kind="http_status")

    async def close(self) -> None:
        pass


def _secret(spec: HttpHandler, where: str) -> bytes | None:
    if spec.secret is not None:
        return spec.secret.encode()
    if spec.secret_env is not None:
        value = os.environ.get(spec.secret_env)
        if not value:
            raise ConfigError(f"{where}.secret_env: variable {spec.secret_env} is not set")
        return value.encode()
    return None


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The body, or None when it is over ``cap`` bytes (reading stops there)."""
    if resp.content_length is not None and resp.content_length > cap:
        return None
    buf = bytearray()
    async for chunk in resp.content.iter_any():
        buf += chunk
        if len(buf) > cap:
            return None
    return bytes(buf)


async def _snippet(resp: aiohttp.ClientResponse) -> str:
    """The start of an error response, on one line."""
    try:
        data = await resp.content.read(_SNIPPET)
    except (aiohttp.ClientError, TimeoutError):
        return ""
    text = data.decode("utf-8", "replace")
    return " ".join(text.split())


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
