"""Applying ``[queues.NAME]`` settings from the config file to the store.

A queue's limits and its paused flag live in the store, shared by every
process, and can be changed at run time (``PATCH /v1/queues/NAME``). The
file must not undo such a change at each restart, yet an edit of the file
must take effect. So each queue in the store keeps a digest of the file
settings last applied to it (``QueueInfo.config_digest``), and the file's
settings for a queue are written only when their digest differs from the
stored one: the file changed for that queue since it was last applied (or
it never was). Otherwise the store's values, runtime changes included, stay.

``weight`` is not stored (it is this process's share of its worker slots),
so it is left out of the digest: editing it re-applies nothing.
"""

from __future__ import annotations

import hashlib
import logging

import orjson

from tqd.config import Config, QueueConfig
from tqd.errors import NotFound
from tqd.models import QueueLimits
from tqd.storage.base import Storage

log = logging.getLogger("tqd.queues")

#: The settings of a [queues.NAME] table that are kept in the store.
STORED_SETTINGS = (*QueueLimits.__struct_fields__, "paused")


def limits_of(queue: QueueConfig) -> QueueLimits:
    """The store's limits that a ``[queues.NAME]`` table asks for."""
    limits = {field: getattr(queue, field) for field in QueueLimits.__struct_fields__}
    limits["rate_interval"] = float(limits["rate_interval"])
    return QueueLimits(**limits)


def config_digest(queue: QueueConfig) -> str:
    """A short, stable name of the stored settings of a ``[queues.NAME]``
    table: equal for equal settings, different when any of them differs."""
    settings = {key: getattr(queue, key) for key in STORED_SETTINGS}
    settings["rate_interval"] = float(settings["rate_interval"])  # 1 and 1.0 are the same
    canonical = orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)
    return "v1:" + hashlib.sha256(canonical).hexdigest()[:24]


async def apply_queue_config(storage: Storage, config: Config, now: float) -> list[str]:
    """Write each ``[queues.NAME]`` of ``config`` whose settings changed since
    they were last applied (see the module docstring) to ``storage``; return
    the names of the queues written, sorted.

    The limits are replaced whole (the rate bucket starts full again) and the
    digest stored with them; ``paused`` true or false pauses or resumes the
    queue, unset leaves it as it is.
    """
    applied: list[str] = []
    for name in sorted(config.queues):
        queue = config.queues[name]
        digest = config_digest(queue)
        try:
            stored = (await storage.queue(name)).config_digest
        except NotFound:
            stored = None
        if stored == digest:
            continue
        await storage.set_limits(name, limits_of(queue), now, config_digest=digest)
        if queue.paused is not None:
            await storage.set_paused(name, queue.paused)
        applied.append(name)
    if applied:
        log.info("applied the [queues.*] settings of the config to the store for: %s "
                 "(changed since last applied)", ", ".join(applied))
    return applied
