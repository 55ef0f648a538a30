"""Configuration: every kind of mistake gives one line naming the file, the key
and what is wrong; `tqd config check` and `tqd serve` exit 2 with it; the file,
TQD_* variables and flags apply in that order."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from tests.helpers.cli import one_line_error, run_tqd
from tests.helpers.daemon import Daemon
from tqd.config import DEFAULT_LISTEN, load_config
from tqd.errors import ConfigError

# (what is wrong, file text, the key named, words saying what is wrong)
BAD_FILES: list[tuple[str, str, str, str]] = [
    ("bad TOML", 'listen = "127.0.0.1:7411\n', "invalid TOML", "line 1"),
    ("bad TOML: a table twice", "[worker]\n[worker]\n", "invalid TOML", "twice"),
    ("unknown top-level key", 'lisen = "127.0.0.1:1"\n', "lisen", "unknown key"),
    ("unknown key in a section", "[worker]\nconcurency = 4\n", "worker.concurency", "unknown key"),
    ("unknown key in [tasks.X]", '[tasks.resize]\nhandler = "m:f"\nretries = 3\n',
     "tasks.resize.retries", "unknown key"),
    ("unknown key in [queues.X]", "[queues.images]\nlimit = 3\n", "queues.images.limit", "unknown key"),
    ("wrong type", 'shutdown_grace = "soon"\n', "shutdown_grace", "expected `float`, got `str`"),
    ("wrong type in a section", '[worker]\nconcurrency = "many"\n', "worker.concurrency", "expected `int`"),
    ("wrong type in [tasks.X]", '[tasks.x]\nhandler = "m:f"\nmax_attempts = 2.5\n',
     "tasks.x.max_attempts", "expected `int"),
    ("a section that is not a table", "worker = 3\n", "worker", "expected `object`"),
    ("a queue that is not a table", "[queues]\nimages = 5\n", "queues.images", "expected `object`"),
    ("out of range", "[worker]\nconcurrency = 0\n", "worker.concurrency", ">= 1"),
    ("out of range in [tasks.X]", '[tasks.x]\nhandler = "m:f"\npriority = 101\n', "tasks.x.priority", "<= 100"),
    ("negative seconds", "shutdown_grace = -1\n", "shutdown_grace", ">= 0"),
    ("a value not in the list", 'log_level = "loud"\n', "log_level", "loud"),
    ("listen without a port", 'listen = "localhost"\n', "listen", "HOST:PORT"),
    ("listen port out of range", 'listen = "127.0.0.1:70000"\n', "listen", "out of range"),
    ("storage scheme unknown", 'storage = "mysql://db/tqd"\n', "storage", "unsupported storage scheme 'mysql'"),
    ("a handler that is no module:function", '[tasks.x]\nhandler = "rm -rf /"\n', "tasks.x.handler", "module:function"),
    ("an unknown builtin", '[tasks.x]\nhandler = "builtin:explode"\n', "tasks.x.handler", "unknown builtin"),
    ("a task without a handler", "[tasks.x]\nqueue = \"q\"\n", "tasks.x", "handler"),
    ("a bad queue name", '[queues."a/b"]\nconcurrency = 1\n', 'queues."a/b"', "letters, digits"),
    ("strict dispatch without queues", '[worker]\ndispatch = "strict"\n', "worker.dispatch",
     "needs worker.queues"),
    ("an unknown dispatch", '[worker]\ndispatch = "random"\n', "worker.dispatch", "random"),
    ("a burst without a rate limit", "[queues.q]\nrate_burst = 5\n", "queues.q.rate_burst",
     "needs rate_limit"),
    ("a rate interval over a day", "[queues.q]\nrate_limit = 1\nrate_interval = 86401\n",
     "queues.q.rate_interval", "at most 86400"),
    ("a zero rate interval", "[queues.q]\nrate_limit = 1\nrate_interval = 0\n",
     "queues.q.rate_interval", "> 0"),
    ("a zero group concurrency", "[queues.q]\ngroup_concurrency = 0\n",
     "queues.q.group_concurrency", ">= 1"),
    ("paused not a boolean", '[queues.q]\npaused = "yes"\n', "queues.q.paused", "expected `bool"),
    ("no connections at all", "[api]\nmax_connections = 0\n", "api.max_connections", ">= 1"),
    ("connections beyond any file limit", "[api]\nmax_connections = 2000000\n",
     "api.max_connections", "<= 1048576"),
    ("connections not a number", '[api]\nmax_connections = "many"\n', "api.max_connections",
     "expected `int`"),
]


@pytest.mark.parametrize(("what", "text", "key", "wrong"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_file_names_the_file_the_key_and_what_is_wrong(
    tmp_path: Path, what: str, text: str, key: str, wrong: str
) -> None:
    path = tmp_path / "tqd.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={}, check_paths=False)
    message = caught.value.message
    assert message.startswith(f"{path}: "), message
    assert key in message and wrong in message, message
    assert "\n" not in message


def _unusable_paths(tmp_path: Path) -> list[tuple[str, str, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    return [
        (f'data_dir = "{a_file}/sub"\n', "data_dir", "cannot create directory"),
        (f'storage = "sqlite://{a_file}/tqd.db"\n', "storage", "is not a directory"),
        (f'storage = "sqlite://{tmp_path}"\n', "storage", "not a readable, writable file"),
        (f'storage = "sqlite://{tmp_path}/db"\npython_path = ["{tmp_path}/missing"]\n', "python_path",
         "is not a directory"),
    ]


def test_unusable_paths(tmp_path: Path) -> None:
    for text, key, wrong in _unusable_paths(tmp_path):
        path = tmp_path / "tqd.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_config(str(path), env={})
        message = caught.value.message
        assert message.startswith(f"{path}: {key}: ") and wrong in message, message


def test_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file"):
        load_config(str(tmp_path / "nope.toml"), env={})
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(tmp_path), env={})
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"listen = '\xff\xfe'\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(str(binary), env={})


def test_no_file_at_all_gives_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(None, env={}, overrides={"data_dir": str(tmp_path)})
    assert config.listen == DEFAULT_LISTEN == "127.0.0.1:7411"
    assert config.storage_url == f"sqlite://{tmp_path}/tqd.db"
    assert config.shutdown_grace == 25.0
    assert config.api.max_connections == 1024
    assert config.defaults.max_attempts == 3 and config.defaults.visibility_timeout == 30.0
    assert config.retention.completed == 7 * 86400
    assert config.api.max_body_size == 1024 * 1024 and config.api.max_batch == 1000


def test_queue_limits_and_strict_dispatch_with_its_queues_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "tqd.toml"
    path.write_text('[worker]\ndispatch = "strict"\nqueues = ["urgent", "bulk"]\n'
                    "[queues.bulk]\nconcurrency = 4\nrate_limit = 100\nrate_interval = 60\n"
                    "rate_burst = 10\ngroup_concurrency = 2\npaused = false\nweight = 3\n")
    config = load_config(str(path), env={}, check_paths=False)
    assert config.worker.dispatch == "strict"
    bulk = config.queues["bulk"]
    assert (bulk.concurrency, bulk.rate_limit, bulk.rate_interval, bulk.rate_burst,
            bulk.group_concurrency, bulk.paused, bulk.weight) == (4, 100, 60, 10, 2, False, 3)


def test_the_example_file_is_valid_and_holds_the_defaults(tmp_path: Path) -> None:
    example = Path(__file__).parents[1] / "tqd.toml.example"
    from_file = load_config(str(example), env={}, check_paths=False)
    defaults = load_config(None, env={}, check_paths=False)
    import msgspec

    assert msgspec.structs.replace(from_file, source="") == msgspec.structs.replace(defaults, source="")


# -- precedence: file < TQD_* < flags ---------------------------------------------


def test_variables_override_the_file_and_flags_override_both(tmp_path: Path) -> None:
    path = tmp_path / "tqd.toml"
    path.write_text(f'listen = "127.0.0.1:1001"\nstorage = "sqlite://{tmp_path}/file.db"\n'
                    'log_level = "warning"\n')
    env = {"TQD_LISTEN": "127.0.0.1:1002", "TQD_STORAGE": f"sqlite://{tmp_path}/env.db"}

    config = load_config(str(path), env={})
    assert (config.listen, config.storage, config.log_level) == (
        "127.0.0.1:1001", f"sqlite://{tmp_path}/file.db", "warning")
    config = load_config(str(path), env=env)
    assert (config.listen, config.storage, config.log_level) == (
        "127.0.0.1:1002", f"sqlite://{tmp_path}/env.db", "warning")
    config = load_config(str(path), env=env, overrides={"listen": "127.0.0.1:1003", "storage": None})
    assert (config.listen, config.storage) == ("127.0.0.1:1003", f"sqlite://{tmp_path}/env.db")


def test_tqd_config_names_the_file_and_a_path_overrides_it(tmp_path: Path) -> None:
    by_env = tmp_path / "env.toml"
    by_env.write_text(f'listen = "127.0.0.1:2001"\ndata_dir = "{tmp_path}"\n')
    by_arg = tmp_path / "arg.toml"
    by_arg.write_text(f'listen = "127.0.0.1:2002"\ndata_dir = "{tmp_path}"\n')
    assert load_config(None, env={"TQD_CONFIG": str(by_env)}).listen == "127.0.0.1:2001"
    assert load_config(str(by_arg), env={"TQD_CONFIG": str(by_env)}).listen == "127.0.0.1:2002"


def test_a_bad_variable_or_flag_is_named_rather_than_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tqd.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={"TQD_LISTEN": "nowhere"})
    assert caught.value.message.startswith("TQD_LISTEN: listen: expected HOST:PORT")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={}, overrides={"storage": "ftp://x"})
    assert caught.value.message.startswith("--storage: storage: unsupported storage scheme")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={"TQD_LOG_LEVEL": "loud"})
    assert caught.value.message.startswith("TQD_LOG_LEVEL: log_level:")


# -- the command line, as real subprocesses ----------------------------------------


def test_config_check_exits_0_on_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "tqd.toml"
    path.write_text(f'listen = "127.0.0.1:3001"\nstorage = "sqlite://{tmp_path}/t.db"\n'
                    '[tasks.resize]\nhandler = "builtin:echo"\nqueue = "images"\n'
                    "[queues.images]\nconcurrency = 2\n")
    proc = run_tqd("config", "check", str(path))
    assert proc.returncode == 0, proc.stderr
    assert str(path) in proc.stdout and "ok" in proc.stdout
    assert "127.0.0.1:3001" in proc.stdout and f"sqlite://{tmp_path}/t.db" in proc.stdout
    assert proc.stderr == ""


@pytest.mark.parametrize("case", [BAD_FILES[0], BAD_FILES[4], BAD_FILES[6], BAD_FILES[11],
                                  *(c for c in BAD_FILES if c[2] == "api.max_connections")],
                         ids=lambda c: c[0])
def test_config_check_exits_2_with_one_line(tmp_path: Path, case: tuple[str, str, str, str]) -> None:
    _, text, key, wrong = case
    path = tmp_path / "tqd.toml"
    path.write_text(text)
    proc = run_tqd("config", "check", str(path))
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert str(path) in line and key in line and wrong in line
    assert proc.stdout == ""


def test_config_check_reads_tqd_config_and_tqd_variables(tmp_path: Path) -> None:
    path = tmp_path / "tqd.toml"
    path.write_text(f'listen = "127.0.0.1:4001"\ndata_dir = "{tmp_path}"\n')
    proc = run_tqd("config", "check", env={"TQD_CONFIG": str(path)})
    assert proc.returncode == 0 and "127.0.0.1:4001" in proc.stdout
    proc = run_tqd("config", "check", env={"TQD_CONFIG": str(path), "TQD_LISTEN": "127.0.0.1:4002"})
    assert proc.returncode == 0 and "127.0.0.1:4002" in proc.stdout
    proc = run_tqd("config", "check", env={"TQD_CONFIG": str(path), "TQD_LISTEN": "bad"})
    assert proc.returncode == 2 and "TQD_LISTEN: listen" in one_line_error(proc)


def test_config_check_imports_python_handlers(tmp_path: Path) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "jobs_broken_at_import.py").write_text("raise RuntimeError('kaputt')\n")
    path = tmp_path / "tqd.toml"
    path.write_text(f'data_dir = "{tmp_path}"\npython_path = ["{tmp_path}/mods"]\n'
                    '[tasks.a]\nhandler = "jobs_broken_at_import:run"\n')
    proc = run_tqd("config", "check", str(path))
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "tasks.a.handler" in line and "kaputt" in line
    path.write_text(f'data_dir = "{tmp_path}"\n[tasks.a]\nhandler = "no_such_module_here:run"\n')
    proc = run_tqd("config", "check", str(path))
    assert proc.returncode == 2 and "no_such_module_here" in one_line_error(proc)


@pytest.mark.parametrize("case", ["bad file", "bad flag", "bad handler", "missing file"])
def test_serve_with_a_bad_config_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    path = tmp_path / "tqd.toml"
    args = ["serve", "--config", str(path), "--storage", f"sqlite://{tmp_path}/t.db"]
    if case == "bad file":
        path.write_text("[worker]\nconcurrency = -3\n")
        expect = f"{path}: worker.concurrency"
    elif case == "bad flag":
        path.write_text("")
        args += ["--listen", "127.0.0.1:99999"]
        expect = "--listen: listen: port 99999 is out of range"
    elif case == "bad handler":
        path.write_text('[tasks.a]\nhandler = "nowhere_to_be_found:run"\n')
        expect = "tasks.a.handler"
    else:
        expect = f"{path}: no such file"
    proc = run_tqd(*args, timeout=30)
    assert proc.returncode == 2
    assert expect in one_line_error(proc)
    assert proc.stdout == ""


def test_serve_refuses_a_store_in_use_with_one_line(tmp_path: Path) -> None:
    storage = f"sqlite://{tmp_path}/t.db"
    with Daemon(storage):
        proc = run_tqd("serve", "--listen", "127.0.0.1:0", "--storage", storage, timeout=30)
    assert proc.returncode == 2
    assert "in use by another tqd process" in one_line_error(proc)


def test_serve_flags_override_variables_and_the_file(tmp_path: Path) -> None:
    """File, TQD_* and flags each name a different address and store; the
    daemon uses the flags'."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))  # the file and the variable name an address in use
    busy = f"127.0.0.1:{taken.getsockname()[1]}"
    path = tmp_path / "tqd.toml"
    path.write_text(f'listen = "{busy}"\nstorage = "sqlite://{tmp_path}/file.db"\n')
    daemon = Daemon(f"sqlite://{tmp_path}/flag.db", config=path,
                    env={"TQD_LISTEN": busy, "TQD_STORAGE": f"sqlite://{tmp_path}/env.db"})
    try:
        with daemon:
            assert daemon.url.startswith("http://127.0.0.1:") and not daemon.url.endswith(busy)
            status, _ = daemon.call("GET", "/healthz")
            assert status == 200
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        assert (tmp_path / "flag.db").exists()
        assert not (tmp_path / "file.db").exists() and not (tmp_path / "env.db").exists()
    finally:
        taken.close()
