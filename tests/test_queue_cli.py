"""`tqd queue set`, the LIMITS column of `tqd queues` and `tqd enqueue
--group`, against a real `tqd serve` (SQLite).

Setting limits and storing groups need the backend's support (issue 8);
pausing through `queue set` and the refused commands do not.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.daemon import Daemon
from tests.test_cli import Cli
from tqd.cli import limits_text


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    path = tmp_path_factory.mktemp("queue-cli") / "tqd.db"
    with Daemon(f"sqlite://{path}") as d:
        yield d


@pytest.fixture
def cli(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(daemon.url, capsys)


def test_limits_text_is_short() -> None:
    none = {"concurrency": None, "rate_limit": None, "rate_interval": 1.0, "rate_burst": None,
            "group_concurrency": None}
    assert limits_text(none) == "-"
    assert limits_text({}) == "-"
    assert limits_text({**none, "concurrency": 5}) == "conc=5"
    assert limits_text({**none, "rate_limit": 10}) == "rate=10/s"
    assert limits_text({**none, "concurrency": 2, "rate_limit": 100, "rate_interval": 60.0,
                        "rate_burst": 20, "group_concurrency": 3}) \
        == "conc=2 rate=100/60s burst=20 group=3"
    assert limits_text({**none, "rate_limit": 1, "rate_interval": 0.5}) == "rate=1/0.5s"


def test_queue_set_pauses_and_resumes(cli: Cli) -> None:
    q = cli.json("queue", "set", "cli-p", "--paused")
    assert q["name"] == "cli-p" and q["paused"] is True
    assert cli.json("queue", "set", "cli-p", "--resumed")["paused"] is False


def test_queue_set_refuses_nothing_to_set_and_bad_values(cli: Cli) -> None:
    status, out, err = cli("queue", "set", "cli-r")
    assert status == 2 and out == "" and "give at least one setting" in err
    status, _, err = cli("queue", "set", "cli-r", "--concurrency", "many")
    assert status == 2 and "--concurrency: expected a whole number or 'none'" in err
    status, _, err = cli("queue", "set", "cli-r", "--rate-interval", "soon")
    assert status == 2 and "--rate-interval: expected a number of seconds" in err
    status, _, err = cli("queue", "set", "cli-r", "--concurrency", "0")
    assert status == 2 and "concurrency" in err and "400" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):  # argparse: not both
        cli("queue", "set", "cli-r", "--paused", "--resumed")


def test_queue_set_changes_limits_and_queues_shows_them(cli: Cli) -> None:
    q = cli.json("queue", "set", "cli-l", "--concurrency", "3", "--rate-limit", "10",
                 "--rate-interval", "60", "--group-concurrency", "2")
    assert q["limits"] == {"concurrency": 3, "rate_limit": 10, "rate_interval": 60.0,
                           "rate_burst": None, "group_concurrency": 2}
    status, out, _ = cli("queues")
    assert status == 0
    header, *rows = out.strip().splitlines()
    assert header.split()[-1] == "LIMITS"
    row = next(r for r in rows if r.split()[0] == "cli-l")
    assert row.endswith("conc=3 rate=10/60s group=2")
    q = cli.json("queue", "set", "cli-l", "--concurrency", "none", "--rate-burst", "5", "--paused")
    assert q["paused"] is True
    assert q["limits"] == {"concurrency": None, "rate_limit": 10, "rate_interval": 60.0,
                           "rate_burst": 5, "group_concurrency": 2}


def test_enqueue_with_a_group(cli: Cli) -> None:
    task = cli.json("enqueue", "tqd.noop", "--queue", "cli-g", "--group", "tenant-7")
    assert task["group"] == "tenant-7"
    assert cli.json("get", task["id"])["group"] == "tenant-7"
