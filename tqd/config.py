"""Configuration: tqd.toml, then TQD_* environment variables, then flags.

``load_config`` builds one frozen :class:`Config` at the edge of the program.
Every problem raises :class:`~tqd.errors.ConfigError` with one message that
names the source (file or variable), the key and what is wrong; the CLI turns
it into exit status 2. ``tqd.toml.example`` documents every setting.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from tqd.cronspec import CronError, CronSpec, load_zone
from tqd.errors import ConfigError
from tqd.models import PRIORITY_MAX, PRIORITY_MIN, valid_name
from tqd.tokens import HASH_PATTERN

DEFAULT_PORT = 7411
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
DB_FILENAME = "tqd.db"
#: [api] max_connections unless set (as nginx's worker_connections); the
#: shipped systemd unit's LimitNOFILE=65536 leaves room for it and more.
DEFAULT_MAX_CONNECTIONS = 1024

Seconds = Annotated[float, msgspec.Meta(ge=0)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]
Priority = Annotated[int, msgspec.Meta(ge=PRIORITY_MIN, le=PRIORITY_MAX)]
#: The builtin handlers; their task names are ``tqd.<name>``.
BUILTIN_NAMES = ("noop", "echo", "sleep", "fail")


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of every table: unknown keys are errors, values never change."""


# -- handlers ---------------------------------------------------------------


class PythonHandler(_Section, tag_field="kind", tag="python"):
    """Run ``module:function`` (async, or sync in a thread)."""

    target: str


class BuiltinHandler(_Section, tag_field="kind", tag="builtin"):
    """One of tqd's own handlers: noop, echo, sleep, fail."""

    name: Literal["noop", "echo", "sleep", "fail"]


#: The daemon's variables an exec command sees unless ``pass_env`` says otherwise.
DEFAULT_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


class ExecHandler(_Section, tag_field="kind", tag="exec"):
    """Run a command (argv, never a shell) with the payload on stdin.

    Exit 0: success, stdout is the result (JSON when it parses, else text).
    Exit 75 (EX_TEMPFAIL): try again. Any other exit: a failure that retries
    while attempts remain, unless the code is in ``no_retry_exit_codes``.
    """

    command: Annotated[list[str], msgspec.Meta(min_length=1)]
    #: Working directory; None: the daemon's.
    cwd: str | None = None
    #: Variables set for the command (after ``pass_env``, before TQD_*).
    env: dict[str, str] = {}
    #: Names of the daemon's variables the command may see. Nothing else of
    #: the daemon's environment reaches it (it may hold tokens or passwords).
    pass_env: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_PASS_ENV))
    #: Largest stdout accepted; a command writing more is stopped and fails.
    max_output: Annotated[int, msgspec.Meta(ge=0)] = 1024 * 1024
    #: Bytes of the end of stderr kept in the error of a failed attempt.
    stderr_tail: Annotated[int, msgspec.Meta(ge=0, le=3000)] = 2000
    #: Seconds between SIGTERM and SIGKILL when a command is stopped.
    kill_grace: Seconds = 5.0
    #: Exit codes that fail the task at once, without retry.
    no_retry_exit_codes: list[Annotated[int, msgspec.Meta(ge=1, le=255)]] = []


class HttpHandler(_Section, tag_field="kind", tag="http"):
    """POST the payload to a URL (a webhook); 2xx is success, the body the result."""

    url: str
    #: Extra request headers (e.g. Authorization for the target).
    headers: dict[str, str] = {}
    #: Seconds one request may take (the task's timeout also applies).
    timeout: PositiveSeconds = 30.0
    #: HMAC-SHA256 key for the ``Tqd-Signature`` header; or name a variable
    #: holding it with ``secret_env`` so the key stays out of the file.
    secret: str | None = None
    secret_env: str | None = None
    #: 4xx statuses that retry (others fail at once); 429 always retries.
    retry_statuses: list[Annotated[int, msgspec.Meta(ge=400, le=499)]] = []
    #: Largest response body accepted as a result.
    max_response: Annotated[int, msgspec.Meta(ge=0)] = 1024 * 1024
    #: Longest Retry-After honoured; a longer one is cut to this.
    max_retry_after: PositiveSeconds = 600.0


class RemoteHandler(_Section, tag_field="kind", tag="remote"):
    """Nothing runs here: workers elsewhere lease the tasks over the HTTP API.

    A remote task needs a queue of its own: queues that hold remote task
    names are never served by the local pool.
    """


HandlerConfig = PythonHandler | BuiltinHandler | ExecHandler | HttpHandler | RemoteHandler


# -- sections ---------------------------------------------------------------


class TaskDefaults(_Section):
    """Defaults for every task name that does not set its own."""

    max_attempts: Count = 3
    timeout: PositiveSeconds | None = None
    visibility_timeout: PositiveSeconds = 30.0
    backoff_base: PositiveSeconds = 1.0
    backoff_max: PositiveSeconds = 3600.0
    queue: str = "default"


class TaskConfig(_Section):
    """``[tasks.NAME]``: what runs a task name and how it retries.

    A string handler is ``module:function`` (kind python) or
    ``builtin:NAME``. Unset values come from ``[defaults]``.
    """

    handler: str | HandlerConfig | None = None
    queue: str | None = None
    priority: Priority = 0
    max_attempts: Count | None = None
    timeout: PositiveSeconds | None = None
    visibility_timeout: PositiveSeconds | None = None
    backoff_base: PositiveSeconds | None = None
    backoff_max: PositiveSeconds | None = None
    #: Seconds a task of this name holds its unique key (the request's
    #: ``unique_key``, else a hash of its payload): an enqueue of a twin
    #: meanwhile returns the task already there. None: not unique.
    unique_for: PositiveSeconds | None = None


class ScheduleConfig(_Section):
    """``[schedules.NAME]``: enqueue ``task`` at each instant ``cron`` names.

    ``cron`` has five fields (six with seconds first) or is a shortcut such
    as ``@daily``, read in ``timezone`` (an IANA name). Unset ``queue`` and
    ``priority`` come from the task's definition. ``catch_up``: at start,
    make up the latest instant missed while no tqd ran (once).
    """

    cron: str
    task: str
    timezone: str = "UTC"
    payload: Any = None
    queue: str | None = None
    priority: Priority | None = None
    catch_up: bool = False


class QueueConfig(_Section):
    """``[queues.NAME]``: the queue's limits and this process's share of it.

    ``concurrency``, ``rate_limit`` (per ``rate_interval`` seconds, with
    ``rate_burst``), ``group_concurrency`` and ``paused`` are kept in the
    store and hold across every process (see tqd.models.QueueLimits). They
    are written to the store at start and on reload when these settings
    differ from the ones last applied from a config file, so a change made
    at runtime (PATCH /v1/queues/NAME) lasts until the file changes.
    ``paused`` unset leaves the queue as it is. ``weight`` is this process's
    share of its worker slots when several queues have work (dispatch
    "weighted"); it is not stored.
    """

    concurrency: Count | None = None
    rate_limit: Count | None = None
    rate_interval: PositiveSeconds = 1.0
    rate_burst: Count | None = None
    group_concurrency: Count | None = None
    paused: bool | None = None
    weight: Count = 1


class WorkerConfig(_Section):
    """``[worker]``: the pool of worker coroutines in this process."""

    concurrency: Count = 100
    #: Queues this process serves; empty means every queue.
    queues: list[str] = []
    #: How free worker slots are shared among queues that have work:
    #: "weighted" by each queue's ``weight`` (default 1 each), or "strict":
    #: in the order of ``queues`` (which must then be given), a queue taking
    #: slots only when every queue before it has no task it may lease.
    dispatch: Literal["weighted", "strict"] = "weighted"
    #: Most tasks leased in one round trip.
    lease_batch: Count = 200
    enabled: bool = True


class SqliteConfig(_Section):
    """``[sqlite]``: the embedded store."""

    #: "full" fsyncs every group commit (an acknowledged task survives power
    #: loss); "normal" survives a crash of tqd but not of the machine.
    synchronous: Literal["full", "normal"] = "full"
    #: Most operations committed together in one transaction.
    max_group: Count = 2000


class RedisConfig(_Section):
    """``[redis]``: the shared store, used when ``storage`` is a redis URL."""

    #: First part of every key name; several tqd clusters can share one Redis.
    prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,64}$")] = "tqd"
    #: Refuse to start when Redis may evict keys (maxmemory-policy is not
    #: noeviction) instead of only warning.
    refuse_eviction: bool = False
    #: TLS files for rediss:// URLs (None: the system's CA store, no client cert).
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None


class RolesConfig(_Section):
    """``[roles]``: how often the background roles run."""

    supervisor_interval: PositiveSeconds = 1.0
    scheduler_interval: PositiveSeconds = 1.0
    janitor_interval: PositiveSeconds = 60.0
    heartbeat_interval: PositiveSeconds = 5.0
    #: Seconds between writes of this process's statistics to the store.
    stats_interval: PositiveSeconds = 1.0
    #: A process whose registration is not refreshed for this long is gone.
    worker_ttl: PositiveSeconds = 30.0
    #: A cron instant fires late by up to this much (a restart, a stall);
    #: an older one counts as missed (made up only with catch_up).
    cron_misfire_grace: Seconds = 10.0
    #: Progress reports are written at most once per this many seconds (the
    #: latest report of each task wins); reports in between cost nothing.
    progress_interval: PositiveSeconds = 1.0


class RetentionConfig(_Section):
    """``[retention]``: how long finished tasks are kept, per state."""

    completed: Seconds = 7 * 86400.0
    failed: Seconds = 7 * 86400.0
    cancelled: Seconds = 7 * 86400.0


class ApiConfig(_Section):
    """``[api]``: limits of the HTTP API."""

    max_body_size: Count = 1024 * 1024
    max_batch: Count = 1000
    max_wait: PositiveSeconds = 60.0
    #: Origins (``scheme://host[:port]``, or ``"*"``) whose browser pages may
    #: call the API; empty: CORS is off and cross-origin calls are refused.
    cors_origins: list[str] = []
    #: Deepest nesting of a payload (orjson cannot encode more than 254 levels).
    max_depth: Annotated[int, msgspec.Meta(ge=1, le=254)] = 32
    #: Seconds a connection may take to send a request head (slowloris);
    #: also how long an idle keep-alive connection stays open.
    header_timeout: PositiveSeconds = 15.0
    #: Seconds a request body may take to arrive; 408 after.
    body_timeout: PositiveSeconds = 30.0
    #: Most client connections open at once (WebSocket included); more get
    #: 503 too_many_connections. Cut at start to what the open-file limit
    #: allows (tqd/api/connections.py).
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=1_048_576)] = DEFAULT_MAX_CONNECTIONS


class TokenConfig(_Section):
    """``[[tokens]]``: one API token, by its SHA-256 digest (never the token)."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    hash: Annotated[str, msgspec.Meta(pattern=HASH_PATTERN)]
    scope: Literal["read", "write", "admin"]


class TlsConfig(_Section):
    """``[tls]``: serve HTTPS with this certificate chain and key (PEM files)."""

    cert: str = ""
    key: str = ""


class HttpClientConfig(_Section):
    """``[http]``: the one client session shared by every http handler."""

    #: Most open connections to one target (host and port) at once.
    connections_per_host: Count = 64
    #: Seconds to open a connection before the attempt fails (and retries).
    connect_timeout: PositiveSeconds = 10.0
class EventsConfig(_Section):
    """``[events]``: the live stream at ``/v1/events`` (WebSocket)."""

    #: Most task messages a client is sent at once; when more changes came in
    #: one interval, it gets one "lagged" message with their number instead
    #: (and fetches the state again).
    buffer: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 100
    #: Least time between two bursts of task messages to one client.
    interval: PositiveSeconds = 0.5
    #: A client whose socket stays full this long is closed with code 4008.
    stall_timeout: PositiveSeconds = 30.0
    #: Most clients at once; more are refused with 503.
    max_clients: Count = 1000


class Config(_Section):
    """The whole configuration of one tqd process."""

    listen: str = DEFAULT_LISTEN
    #: Storage URL; empty means ``sqlite://`` + data_dir/tqd.db.
    storage: str = ""
    data_dir: str = ""
    python_path: list[str] = []
    shutdown_grace: Seconds = 25.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "text", "json"] = "auto"
    defaults: TaskDefaults = TaskDefaults()
    worker: WorkerConfig = WorkerConfig()
    sqlite: SqliteConfig = SqliteConfig()
    redis: RedisConfig = RedisConfig()
    roles: RolesConfig = RolesConfig()
    retention: RetentionConfig = RetentionConfig()
    api: ApiConfig = ApiConfig()
    #: API tokens; with none, the API asks for none (and listens on loopback only).
    tokens: list[TokenConfig] = []
    tls: TlsConfig = TlsConfig()
    http: HttpClientConfig = HttpClientConfig()
    events: EventsConfig = EventsConfig()
    queues: dict[str, QueueConfig] = {}
    tasks: dict[str, TaskConfig] = {}
    schedules: dict[str, ScheduleConfig] = {}
    #: Where the config was read from (not a setting).
    source: str = ""

    @property
    def host(self) -> str:
        return parse_listen(self.listen, "listen")[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen, "listen")[1]

    @property
    def storage_url(self) -> str:
        """The storage URL with the default filled in."""
        if self.storage:
            return self.storage
        return "sqlite://" + str(Path(self.data_dir or default_data_dir()) / DB_FILENAME)


# Tables whose keys are names chosen by the user; converted entry by entry so
# an error can name the entry.
_NAMED_TABLES: dict[str, type] = {
    "queues": QueueConfig, "tasks": TaskConfig, "schedules": ScheduleConfig,
}
# Settings that may also come from TQD_<NAME> variables.
ENV_SETTINGS = ("config", "listen", "storage", "data_dir", "log_level", "log_format")


def default_data_dir() -> str:
    """Where the SQLite file lives when nothing says otherwise.

    systemd's ``$STATE_DIRECTORY`` if set; ``/var/lib/tqd`` for root;
    else ``$XDG_DATA_HOME/tqd`` (``~/.local/share/tqd``).
    """
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return state.split(":")[0]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "/var/lib/tqd"
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(xdg) / "tqd")


@functools.lru_cache(maxsize=64)  # Config.host is read on every request (the CORS guard)
def parse_listen(value: str, where: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6); raise ConfigError naming ``where``."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]\s]+):(\d+)", value.strip())
    if not m:
        raise ConfigError(f"{where}: expected HOST:PORT, got {value!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ConfigError(f"{where}: port {port} is out of range 0-65535")
    return host, port


def _path_of(err: msgspec.ValidationError, prefix: str) -> tuple[str, str]:
    """Turn msgspec's ``... - at `$.a.b``` into (``prefix.a.b``, message)."""
    text = str(err)
    message, _, at = text.partition(" - at `$")
    path = at.rstrip("`").lstrip(".")
    unknown = re.fullmatch(r"Object contains unknown field `(.+)`", message)
    if unknown:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        message = "unknown key"
    full = ".".join(p for p in (prefix, path) if p)
    return full, message[0].lower() + message[1:]


def _convert(raw: Any, kind: type, source: str, prefix: str) -> Any:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as err:
        key, message = _path_of(err, prefix)
        raise ConfigError(f"{source}: {key}: {message}") from None


def _quote(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{path}: not readable (permission denied)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text") from None


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    check_paths: bool = True,
) -> Config:
    """Read the file at ``path`` (or ``$TQD_CONFIG``), apply ``TQD_*``
    variables from ``env`` and then ``overrides`` (flags), and validate.

    With ``check_paths`` the data directory and python_path entries must be
    usable; ``tqd config check`` and ``tqd serve`` both check them.
    """
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    path = path or env.get("TQD_CONFIG") or None
    source = path or "defaults"
    raw: dict[str, Any] = _read_file(path) if path else {}

    if "source" in raw:
        raise ConfigError(f"{source}: source: unknown key")
    # Settings that came from a variable or a flag, so an error in one of
    # them names that variable or flag rather than the file.
    origins: dict[str, str] = {}
    for key in ENV_SETTINGS[1:]:
        var = "TQD_" + key.upper()
        if var in env and key not in overrides:
            raw[key] = env[var]
            origins[key] = var
    raw.update(overrides)
    origins.update({k: "--" + k.replace("_", "-") for k in overrides if k in ENV_SETTINGS})
    try:
        return _build(raw, source, check_paths)
    except ConfigError as err:
        for key, origin in origins.items():
            if err.message.startswith(f"{source}: {key}:"):
                raise ConfigError(origin + err.message.removeprefix(source)) from None
        raise


def _build(raw: dict[str, Any], source: str, check_paths: bool) -> Config:
    named = {k: raw.pop(k) for k in _NAMED_TABLES if k in raw}
    base = _convert(raw, Config, source, "")
    tables: dict[str, dict[str, Any]] = {}
    for table, kind in _NAMED_TABLES.items():
        entries = named.get(table, {})
        if not isinstance(entries, dict):
            raise ConfigError(f"{source}: {table}: expected a table of named entries")
        tables[table] = {
            name: _convert(entry, kind, source, f"{table}.{_quote(name)}")
            for name, entry in entries.items()
        }
    config = msgspec.structs.replace(base, source=source, **tables)
    _check(config, source, check_paths)
    return config


def _check(config: Config, source: str, check_paths: bool) -> None:
    """The checks that types alone cannot express."""
    parse_listen(config.listen, f"{source}: listen")
    _check_storage_url(config.storage_url, f"{source}: storage")
    for name, queue in config.queues.items():
        if not valid_name(name):
            raise ConfigError(f"{source}: queues.{_quote(name)}: {NAME_RULE}")
        if queue.rate_burst is not None and queue.rate_limit is None:
            raise ConfigError(
                f"{source}: queues.{_quote(name)}.rate_burst: needs rate_limit (the burst is "
                "the most tokens of the rate limit's bucket)"
            )
        if queue.rate_interval > 86400:
            raise ConfigError(
                f"{source}: queues.{_quote(name)}.rate_interval: at most 86400 seconds (a day)"
            )
    for q in config.worker.queues:
        if not valid_name(q):
            raise ConfigError(f"{source}: worker.queues: {q!r}: {NAME_RULE}")
    if config.worker.dispatch == "strict" and not config.worker.queues:
        raise ConfigError(
            f"{source}: worker.dispatch: \"strict\" needs worker.queues (the queues in the "
            "order they are served)"
        )
    if not valid_name(config.defaults.queue):
        raise ConfigError(f"{source}: defaults.queue: {NAME_RULE}")
    for name, task in config.tasks.items():
        where = f"{source}: tasks.{_quote(name)}"
        if not valid_name(name):
            raise ConfigError(f"{where}: {NAME_RULE}")
        if task.queue is not None and not valid_name(task.queue):
            raise ConfigError(f"{where}.queue: {NAME_RULE}")
        handler = task.handler
        if handler is None and not name.startswith("tqd."):
            raise ConfigError(f"{where}: handler: missing (required for every task name)")
        if isinstance(handler, str):
            parse_handler_string(handler, f"{where}.handler")
        elif isinstance(handler, PythonHandler):
            parse_handler_string(handler.target, f"{where}.handler.target", kind="python")
        elif isinstance(handler, HttpHandler):
            _check_http_handler(handler, f"{where}.handler")
        elif isinstance(handler, ExecHandler):
            _check_exec_handler(handler, f"{where}.handler")
    for name, schedule in config.schedules.items():
        _check_schedule(config, name, schedule, f"{source}: schedules.{_quote(name)}")
    _check_security(config, source)
    if check_paths:
        _check_paths(config, source)


def _check_security(config: Config, source: str) -> None:
    """Tokens, TLS files and CORS origins (see tqd/api/auth.py and cors.py)."""
    names: set[str] = set()
    digests: set[str] = set()
    for i, token in enumerate(config.tokens):
        if token.name in names:
            raise ConfigError(f"{source}: tokens[{i}].name: {token.name!r} is used by another token")
        if token.hash in digests:
            raise ConfigError(f"{source}: tokens[{i}].hash: the same token is configured twice")
        names.add(token.name)
        digests.add(token.hash)
    if bool(config.tls.cert) != bool(config.tls.key):
        missing = "key" if config.tls.cert else "cert"
        raise ConfigError(f"{source}: tls.{missing}: missing (TLS needs both cert and key)")
    for i, origin in enumerate(config.api.cors_origins):
        if origin != "*" and not re.fullmatch(r"https?://(\[[0-9A-Fa-f:.]+\]|[^/\s:\[\]]+)(:\d{1,5})?", origin):
            raise ConfigError(
                f"{source}: api.cors_origins[{i}]: expected scheme://host[:port] "
                f"(no path, no trailing slash) or \"*\", got {origin!r}"
            )


def _check_schedule(config: Config, name: str, schedule: ScheduleConfig, where: str) -> None:
    if not valid_name(name):
        raise ConfigError(f"{where}: {NAME_RULE}")
    try:
        load_zone(schedule.timezone)
    except CronError as err:
        raise ConfigError(f"{where}.timezone: {err}") from None
    try:
        CronSpec(schedule.cron, schedule.timezone)
    except CronError as err:
        raise ConfigError(f"{where}.cron: {err}") from None
    builtin = schedule.task.startswith("tqd.") and schedule.task[4:] in BUILTIN_NAMES
    if schedule.task not in config.tasks and not builtin:
        known = sorted({*config.tasks, *(f"tqd.{b}" for b in BUILTIN_NAMES)})
        raise ConfigError(
            f"{where}.task: unknown task {schedule.task!r}; known tasks: {', '.join(known)}"
        )
    if schedule.queue is not None and not valid_name(schedule.queue):
        raise ConfigError(f"{where}.queue: {NAME_RULE}")


def _check_http_handler(handler: HttpHandler, where: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(handler.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}.url: expected an http:// or https:// URL, got {handler.url!r}")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise ConfigError(f"{where}.url: the port is not a number in 0-65535") from None
    if parts.username or parts.password:
        raise ConfigError(f"{where}.url: put credentials in headers, not in the URL")
    if handler.secret is not None and handler.secret_env is not None:
        raise ConfigError(f"{where}: give secret or secret_env, not both")
    if handler.secret == "":
        raise ConfigError(f"{where}.secret: must not be empty")
    for name, value in handler.headers.items():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise ConfigError(f"{where}.headers: {name!r} is not a valid header name")
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(f"{where}.headers.{name}: a header value cannot hold a line break")


def _check_exec_handler(handler: ExecHandler, where: str) -> None:
    if not handler.command[0]:
        raise ConfigError(f"{where}.command: the program (first item) is empty")
    for i, arg in enumerate(handler.command):
        if "\0" in arg:
            raise ConfigError(f"{where}.command[{i}]: an argument cannot hold a NUL character")
    for name in (*handler.env, *handler.pass_env):
        if not name or "=" in name or "\0" in name:
            raise ConfigError(f"{where}.env: {name!r} is not a variable name")
        if name.startswith("TQD_"):
            raise ConfigError(f"{where}.env: {name}: TQD_* variables are set by tqd itself")


NAME_RULE = (
    "a name is 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
)


def parse_handler_string(value: str, where: str, kind: str | None = None) -> HandlerConfig:
    """``module:function`` → PythonHandler, ``builtin:NAME`` → BuiltinHandler."""
    if kind is None and value.startswith("builtin:"):
        name = value.removeprefix("builtin:")
        if name not in BUILTIN_NAMES:
            raise ConfigError(f"{where}: unknown builtin {name!r} (noop, echo, sleep, fail)")
        return BuiltinHandler(name=name)  # type: ignore[arg-type]
    ident = r"[A-Za-z_][A-Za-z0-9_]*"
    if not re.fullmatch(rf"{ident}(\.{ident})*:{ident}(\.{ident})*", value):
        raise ConfigError(f"{where}: expected 'module:function', got {value!r}")
    return PythonHandler(target=value)


def _check_storage_url(url: str, where: str) -> None:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"{where}: expected a URL such as sqlite:///var/lib/tqd/tqd.db, got {url!r}")
    if scheme == "sqlite":
        if not rest:
            raise ConfigError(f"{where}: the sqlite URL names no file")
        return
    if scheme in REDIS_SCHEMES:
        if not rest.strip("/"):
            raise ConfigError(f"{where}: the {scheme} URL names no host or socket")
        return
    raise ConfigError(
        f"{where}: unsupported storage scheme {scheme!r} (supported: sqlite, redis, rediss, unix)"
    )


#: URL schemes of the Redis store: TCP, TCP with TLS, a Unix socket.
REDIS_SCHEMES = ("redis", "rediss", "unix")


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite://`` URL (``sqlite:///abs/file.db`` → ``/abs/file.db``)."""
    return url.partition("://")[2]


def _check_paths(config: Config, source: str) -> None:
    url = config.storage_url
    if url.startswith("sqlite://"):
        db = Path(sqlite_path(url))
        folder = db.parent
        key = "storage" if config.storage else "data_dir"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file stands where the directory should be
            raise ConfigError(f"{source}: {key}: {str(folder)!r} is not a directory") from None
        except OSError as err:
            raise ConfigError(
                f"{source}: {key}: cannot create directory {str(folder)!r}: {err.strerror}"
            ) from None
        if not folder.is_dir():
            raise ConfigError(f"{source}: {key}: {str(folder)!r} is not a directory")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{source}: {key}: directory {str(folder)!r} is not writable")
        if db.exists() and (db.is_dir() or not os.access(db, os.R_OK | os.W_OK)):
            raise ConfigError(f"{source}: {key}: {str(db)!r} is not a readable, writable file")
    for entry in config.python_path:
        if not Path(entry).is_dir():
            raise ConfigError(f"{source}: python_path: {entry!r} is not a directory")
