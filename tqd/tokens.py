"""API tokens: how they are made, hashed, stored and recognised.

A token is a random secret a client sends as ``Authorization: Bearer <token>``.
tqd never stores or logs it: the configuration holds its SHA-256 digest
(``hash = "sha256:<64 hex digits>"``) with a name (for logs) and a scope.

Why SHA-256 and not a slow password hash (bcrypt, scrypt, argon2): tokens are
not passwords a person chose. ``tqd token new`` makes 256 random bits, and
``tqd token hash`` refuses anything shorter than :data:`MIN_TOKEN_LENGTH`, so
guessing a token from its digest is as hard as guessing the 256 bits. A slow
hash would add milliseconds of CPU to every request and buy nothing.

Scopes are ranked: ``read`` (GET), ``write`` (enqueue, cancel, retry, remote
workers) and ``admin`` (queue controls, delete, purge, redrive, PATCH); a
higher scope may do everything a lower one may.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

#: Scopes from lowest to highest.
SCOPES = ("read", "write", "admin")
_RANK = {scope: i for i, scope in enumerate(SCOPES)}

#: Prefix of the digests in the configuration (names the algorithm).
HASH_PREFIX = "sha256:"
HASH_PATTERN = r"^sha256:[0-9a-f]{64}$"
#: Prefix of tokens made by ``tqd token new``: easy to spot in a leak scanner.
TOKEN_PREFIX = "tqd_"
MIN_TOKEN_LENGTH = 20
MAX_TOKEN_LENGTH = 512
# RFC 7230 "tchar": what may appear in a WebSocket sub-protocol, where the
# dashboard sends the token (``bearer.<token>``). Letters, digits and these.
_TCHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def new_token() -> str:
    """A fresh token: ``tqd_`` and 43 URL-safe characters (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_token_text(token: str) -> str | None:
    """Why ``token`` cannot be used as a token, or None when it can."""
    if len(token) < MIN_TOKEN_LENGTH:
        return (
            f"a token needs at least {MIN_TOKEN_LENGTH} characters (got {len(token)}); "
            "make one with `tqd token new`"
        )
    if len(token) > MAX_TOKEN_LENGTH:
        return f"a token has at most {MAX_TOKEN_LENGTH} characters"
    if not _TCHARS.fullmatch(token):
        return (
            "a token may hold only letters, digits and !#$%&'*+-.^_`|~ "
            "(it must fit in an HTTP header and a WebSocket sub-protocol)"
        )
    return None


def hash_token(token: str) -> str:
    """The digest stored in the configuration: ``sha256:<hex>``."""
    return HASH_PREFIX + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def scope_allows(held: str, needed: str) -> bool:
    """Whether a token of scope ``held`` may do what needs ``needed``."""
    return _RANK[held] >= _RANK[needed]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a recognised token belongs to: its name (safe to log) and scope."""

    name: str
    scope: str


class TokenTable:
    """The configured tokens; recognises a presented token in constant time."""

    def __init__(self, entries: Iterable[tuple[str, str, str]]) -> None:
        """``entries``: ``(name, "sha256:<hex>", scope)`` for each token."""
        self._entries = [
            (bytes.fromhex(digest.removeprefix(HASH_PREFIX)), Identity(name, scope))
            for name, digest, scope in entries
        ]

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, token: str) -> Identity | None:
        """The identity of ``token``, or None when no configured token matches.

        Every configured digest is compared, with ``hmac.compare_digest``,
        whatever matched before: how long this takes says nothing about which
        token (or which part of one) was close.
        """
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Identity | None = None
        for digest, identity in self._entries:
            if hmac.compare_digest(presented, digest) and found is None:
                found = identity
        return found


def config_lines(name: str, token: str, scope: str) -> str:
    """The ``[[tokens]]`` table to paste into tqd.toml for ``token``."""
    return f'[[tokens]]\nname = "{name}"\nhash = "{hash_token(token)}"\nscope = "{scope}"\n'
