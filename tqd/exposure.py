"""Who can reach the API: the loopback rule and the TLS context.

tqd without tokens trusts whoever can connect, so it listens only on a
loopback address unless the operator says ``--insecure-no-auth``. With
``[tls]`` it serves HTTPS itself, for a direct exposure without a proxy.
"""

from __future__ import annotations

import functools
import ipaddress
import ssl

from tqd.config import Config
from tqd.errors import ConfigError


# Cached: the CORS guard asks about the listen host and each request's Host
# header name, and parsing an address costs about 10 µs; the few names a
# server sees repeat (the bound keeps odd Host headers from growing it).
@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    """Whether ``host`` (as in ``listen``) names only this machine.

    ``localhost`` and loopback IP literals do; every other name might
    resolve to a public address, so it counts as exposed.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(config: Config, insecure_no_auth: bool = False) -> None:
    """Refuse (ConfigError, one line) to listen beyond loopback without tokens."""
    if config.tokens or insecure_no_auth or is_loopback(config.host):
        return
    raise ConfigError(
        f"listen: {config.listen} is not a loopback address and no [[tokens]] are configured; "
        "anyone who can connect could run and delete tasks. Add a token (tqd token new) "
        "or pass --insecure-no-auth"
    )


def tls_context(config: Config) -> ssl.SSLContext | None:
    """A server TLS context from ``[tls]``, or None when TLS is not configured.

    TLS 1.2 at least; ConfigError names the file that is missing or unusable.
    """
    cert, key = config.tls.cert, config.tls.key
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as err:
        raise ConfigError(f"{config.source}: tls: no such file: {err.filename}") from None
    except PermissionError as err:
        raise ConfigError(f"{config.source}: tls: not readable: {err.filename}") from None
    except ssl.SSLError as err:
        if err.reason == "KEY_VALUES_MISMATCH":
            reason = "the key does not belong to the certificate"
        elif err.reason is None:  # OpenSSL says only "PEM lib"
            reason = "one of them is not a PEM certificate or key"
        else:
            reason = str(err.reason).lower().replace("_", " ")
        raise ConfigError(
            f"{config.source}: tls: cannot use cert {cert!r} with key {key!r}: {reason}"
        ) from None
    return context
