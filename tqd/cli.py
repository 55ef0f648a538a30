"""The ``tqd`` command: argument parsing and output only.

Exit statuses: 0 ok; 1 the task failed (``--wait``); 2 usage or
configuration error, or a request the server refused; 3 the server cannot be
reached (for ``serve`` and ``migrate``: the store cannot be reached); 4
``--wait SECONDS`` ran out before the task finished. Every error is one line
on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_TASK_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_WAIT_EXPIRED = 0, 1, 2, 3, 4


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help="tqd.toml to read (env TQD_CONFIG)")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to listen on; port 0 picks one (env TQD_LISTEN)")
    p.add_argument("--storage", metavar="URL", help="storage URL, e.g. sqlite:///var/lib/tqd/tqd.db (env TQD_STORAGE)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["auto", "text", "json"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tqd", description="tqd: a task queue in one process.")
    parser.add_argument("--url", help="tqd server for client commands (env TQD_URL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the daemon")
    _add_config_flags(p)
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="listen on a non-loopback address without tokens (anyone who can connect may do anything)")

    p = sub.add_parser("token", help="API tokens: make one, or hash one for tqd.toml")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="SUBCOMMAND")
    for name, text in (("new", "make a token: prints it on stdout and its [[tokens]] table on stderr"),
                       ("hash", "read a token from stdin and print its [[tokens]] table")):
        t = tsub.add_parser(name, help=text)
        t.add_argument("--name", default="client", help="name shown in logs (default: client)")
        t.add_argument("--scope", choices=["read", "write", "admin"], default="read",
                       help="read: GET; write: also enqueue, cancel, retry, remote workers; admin: everything")

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    c = csub.add_parser("check", help="validate a configuration without starting")
    c.add_argument("path", nargs="?", help="tqd.toml (default: $TQD_CONFIG or the defaults)")

    p = sub.add_parser("enqueue", help="enqueue a task")
    p.add_argument("name")
    p.add_argument("payload", nargs="?", help="payload as JSON (default null)")
    p.add_argument("--queue")
    p.add_argument("--priority", type=int)
    p.add_argument("--delay", type=float, help="seconds before it may run")
    p.add_argument("--max-attempts", type=int)
    p.add_argument("--timeout", type=float)
    p.add_argument("--idempotency-key")
    p.add_argument("--group", help="fairness group (a tenant, say): the queue takes turns among groups")
    p.add_argument("--wait", nargs="?", type=float, const=-1.0, metavar="SECONDS",
                   help="wait for the outcome (forever, or at most SECONDS); exit 1 if it fails")

    p = sub.add_parser("get", help="show a task")
    p.add_argument("id")
    p.add_argument("--wait", type=float, metavar="SECONDS", help="wait up to SECONDS for it to finish")

    p = sub.add_parser("ls", help="list tasks, newest first")
    p.add_argument("--state")
    p.add_argument("--queue")
    p.add_argument("--name")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print the raw JSON page")

    for name, text in (("cancel", "cancel a task"), ("retry", "retry a failed or cancelled task")):
        p = sub.add_parser(name, help=text)
        p.add_argument("id")

    p = sub.add_parser("queues", help="list queues with counts and limits")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("queue", help="change a queue's settings")
    qsub = p.add_subparsers(dest="queue_command", required=True, metavar="SUBCOMMAND")
    q = qsub.add_parser(
        "set", help="set limits or pause (every process sharing the store; lasts until the "
                    "config file's [queues.NAME] changes)")
    q.add_argument("queue")
    for flag, kind, text in (
        ("--concurrency", "N", "most tasks processing at once"),
        ("--rate-limit", "N", "most tasks started per rate interval"),
        ("--rate-interval", "SECONDS", "the rate limit's interval (none: 1 second)"),
        ("--rate-burst", "N", "most starts at once after a quiet time (none: the rate limit)"),
        ("--group-concurrency", "N", "most tasks of one group processing at once"),
    ):
        q.add_argument(flag, metavar=kind, help=f"{text}; 'none' removes it")
    state = q.add_mutually_exclusive_group()
    state.add_argument("--paused", dest="paused", action="store_const", const=True,
                       help="pause the queue")
    state.add_argument("--resumed", dest="paused", action="store_const", const=False,
                       help="resume the queue")
    for name in ("pause", "resume"):
        p = sub.add_parser(name, help=f"{name} a queue")
        p.add_argument("queue")

    p = sub.add_parser("migrate", help="copy every task and queue from one store to another")
    p.add_argument("--from", dest="source", required=True, metavar="URL", help="store to copy from")
    p.add_argument("--to", dest="target", required=True, metavar="URL", help="store to copy into")
    p.add_argument("--force", action="store_true",
                   help="add to a target that holds tasks (tasks it holds are left as they are)")
    p.add_argument("--batch", type=int, default=1000, help="tasks per read and per write")
    p.add_argument("--config", metavar="PATH",
                   help="tqd.toml whose [redis] and [sqlite] settings apply to both stores")

    from tqd.bench import add_arguments as add_bench_arguments

    add_bench_arguments(sub.add_parser("bench", help="measure throughput and latency"))
    p = sub.add_parser("version", help="print the version, the commit it was built from and the Python")
    p.add_argument("--verbose", action="store_true", help="also the versions of the bundled libraries")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tqd`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, status: int) -> int:
    print(f"tqd: {message}", file=sys.stderr)
    return status


def _dispatch(args: argparse.Namespace) -> int:
    from tqd.errors import ConfigError, StorageUnavailable

    if args.command == "version":
        return _version(args)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "config":
            return _config_check(args)
        if args.command == "token":
            return _token(args)
        if args.command == "migrate":
            return _migrate(args)
        if args.command == "bench":
            from tqd.bench import run as run_bench

            return run_bench(args)
    except ConfigError as err:
        return _fail(err.message, EXIT_USAGE)
    except StorageUnavailable as err:  # the store cannot be reached at start
        return _fail(err.message, EXIT_UNREACHABLE)
    return _client_command(args)


def _version(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from tqd.buildinfo import build_info, dependency_versions

    info = build_info()
    deps = dependency_versions() if args.verbose else None
    if args.json:
        _print_json({**asdict(info), **({"libraries": deps} if deps is not None else {})})
        return EXIT_OK
    print(info.line())
    for name, version in (deps or {}).items():
        print(f"  {name} {version}")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from tqd.config import Config, load_config
    from tqd.daemon import serve
    from tqd.logs import setup_logging

    overrides = {
        "listen": args.listen,
        "storage": args.storage,
        "log_level": args.log_level,
        "log_format": args.log_format,
    }
    config = load_config(args.config, overrides=overrides)
    from tqd.exposure import check_exposure, tls_context

    check_exposure(config, args.insecure_no_auth)
    tls_context(config)  # an unusable certificate stops the start here, with one line
    setup_logging(config.log_level, config.log_format)
    # Handlers are imported before the loop starts, so a broken one stops
    # the start with a ConfigError and status 2 rather than a traceback.
    from tqd.runtime.catalog import Catalog
    from tqd.runtime.handlers import build_handlers

    build_handlers(Catalog(config), config)

    def reload() -> Config:
        # SIGHUP: the same file, variables and flags as at start.
        return load_config(args.config, overrides=overrides)

    def ready(url: str) -> None:
        print(f"tqd listening on {url}", flush=True)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        import asyncio

        status = asyncio.run(serve(config, on_ready=ready, load=reload))
    else:
        # Not inside the try: an ImportError from the daemon must not restart it.
        status = uvloop.run(serve(config, on_ready=ready, load=reload))
    # Everything is settled or handed back by now. A sync handler may still
    # be running in a thread (Python cannot stop it); its task was handed
    # back, so exit without waiting for it (the interpreter would join it).
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _migrate(args: argparse.Namespace) -> int:
    import asyncio

    from tqd.config import load_config
    from tqd.errors import ConfigError, StorageUnavailable, TqdError
    from tqd.migrate import migrate

    config = load_config(args.config, env={}, check_paths=False) if args.config else None
    try:
        report = asyncio.run(migrate(
            args.source, args.target, config, force=args.force, batch=args.batch,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        ))
    except (ConfigError, StorageUnavailable):
        raise
    except TqdError as err:
        return _fail(f"migration stopped: {err.message}; run it again with --force to finish",
                     EXIT_TASK_FAILED)
    print(report.summary())
    return EXIT_OK if report.complete else EXIT_TASK_FAILED


def _config_check(args: argparse.Namespace) -> int:
    from tqd.config import load_config
    from tqd.runtime.catalog import Catalog
    from tqd.runtime.cron import build_schedules
    from tqd.runtime.handlers import build_handlers

    config = load_config(args.path)
    catalog = Catalog(config)
    build_handlers(catalog, config)
    build_schedules(config, catalog)
    tasks = len(config.tasks)
    print(f"{config.source}: ok ({tasks} task definitions, {len(config.queues)} queues, "
          f"{len(config.schedules)} schedules, storage {config.storage_url}, listen {config.listen})")
    return EXIT_OK


def _token(args: argparse.Namespace) -> int:
    import re

    from tqd.tokens import check_token_text, config_lines, new_token

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", args.name):
        return _fail("--name: 1 to 64 letters, digits, '.', '_' or '-'", EXIT_USAGE)
    if args.token_command == "new":
        token = new_token()
        print(token)
        print(config_lines(args.name, token, args.scope), end="", file=sys.stderr)
        return EXIT_OK
    token = sys.stdin.readline().rstrip("\r\n")
    problem = check_token_text(token)
    if problem is not None:
        return _fail(f"token hash: {problem}", EXIT_USAGE)
    print(config_lines(args.name, token, args.scope), end="")
    return EXIT_OK


def _parse_payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"payload is not valid JSON: {err.msg} at column {err.colno}") from None


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def _client_command(args: argparse.Namespace) -> int:
    from tqd.client import ApiError, Client, Unreachable

    client = Client(args.url)
    try:
        return _run_client(client, args)
    except ValueError as err:
        return _fail(str(err), EXIT_USAGE)
    except ApiError as err:
        return _fail(f"{err.message} (HTTP {err.status}, {err.code})",
                     EXIT_UNREACHABLE if err.status >= 500 else EXIT_USAGE)
    except Unreachable as err:
        return _fail(str(err), EXIT_UNREACHABLE)


def _run_client(client: Any, args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "enqueue":
        task = client.enqueue(
            args.name, _parse_payload(args.payload), queue=args.queue, priority=args.priority,
            delay=args.delay, max_attempts=args.max_attempts, timeout=args.timeout,
            idempotency_key=args.idempotency_key, group=args.group,
        )
        if args.wait is None:
            _print_json(task)
            return EXIT_OK
        task = client.wait(task["id"], None if args.wait < 0 else args.wait)
        _print_json(task)
        if task["state"] in ("failed", "cancelled"):
            return EXIT_TASK_FAILED
        if task["state"] != "completed":
            return _fail(f"task {task['id']} is still {task['state']} after {args.wait:g}s",
                         EXIT_WAIT_EXPIRED)
        return EXIT_OK
    if cmd == "get":
        _print_json(client.get(args.id, wait=args.wait))
        return EXIT_OK
    if cmd == "ls":
        page = client.list(state=args.state, queue=args.queue, name=args.name, limit=args.limit)
        if args.json:
            _print_json(page)
        else:
            _print_table(
                ["ID", "NAME", "QUEUE", "STATE", "ATTEMPTS", "CREATED"],
                [[t["id"], t["name"], t["queue"], t["state"], f"{t['attempts']}/{t['max_attempts']}",
                  t["created_at"]] for t in page["tasks"]],
            )
            if page["next_cursor"]:
                print(f"(more: --limit larger than {args.limit})")
        return EXIT_OK
    if cmd in ("cancel", "retry"):
        _print_json(getattr(client, cmd)(args.id))
        return EXIT_OK
    if cmd == "queues":
        queues = client.queues()
        if args.json:
            _print_json(queues)
        else:
            states = ["pending", "scheduled", "processing", "completed", "failed", "cancelled"]
            _print_table(
                ["QUEUE", "PAUSED", *[s.upper() for s in states], "LIMITS"],
                [[q["name"], "yes" if q["paused"] else "no", *[q["counts"].get(s, 0) for s in states],
                  limits_text(q.get("limits") or {})]
                 for q in queues],
            )
        return EXIT_OK
    if cmd == "queue":
        settings = _queue_settings(args)
        if not settings:
            raise ValueError("queue set: give at least one setting (see tqd queue set --help)")
        _print_json(client.update_queue(args.queue, **settings))
        return EXIT_OK
    if cmd in ("pause", "resume"):
        _print_json(getattr(client, cmd)(args.queue))
        return EXIT_OK
    raise ValueError(f"unknown command {cmd}")


def limits_text(limits: dict[str, Any]) -> str:
    """A queue's limits in one short cell: ``conc=5 rate=10/2s burst=20
    group=2``; ``-`` when it has none."""
    parts = []
    if limits.get("concurrency") is not None:
        parts.append(f"conc={limits['concurrency']}")
    if limits.get("rate_limit") is not None:
        interval = limits.get("rate_interval") or 1.0
        per = "s" if interval == 1 else f"{interval:g}s"
        parts.append(f"rate={limits['rate_limit']}/{per}")
        if limits.get("rate_burst") is not None:
            parts.append(f"burst={limits['rate_burst']}")
    if limits.get("group_concurrency") is not None:
        parts.append(f"group={limits['group_concurrency']}")
    return " ".join(parts) or "-"


def _queue_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The PATCH body of ``tqd queue set``: the flags given ('none' is null)."""
    out: dict[str, Any] = {}
    for key in ("concurrency", "rate_limit", "rate_interval", "rate_burst", "group_concurrency"):
        text = getattr(args, key)
        if text is None:
            continue
        flag = "--" + key.replace("_", "-")
        if text.strip().lower() == "none":
            out[key] = None
            continue
        try:
            out[key] = float(text) if key == "rate_interval" else int(text)
        except ValueError:
            kind = "a number of seconds" if key == "rate_interval" else "a whole number"
            raise ValueError(f"{flag}: expected {kind} or 'none', got {text!r}") from None
    if args.paused is not None:
        out["paused"] = args.paused
    return out


def _print_table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
