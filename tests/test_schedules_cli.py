"""``tqd config check`` with cron schedules, as a real subprocess: time
zones come from the tzdata package when the host has no zone files, and a
bad schedule is one line with exit status 2."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cli import one_line_error, run_tqd

SCHEDULES = '''
[tasks.report]
handler = "builtin:noop"

[schedules.nightly]
cron = "30 2 * * *"
timezone = "America/Argentina/Buenos_Aires"
task = "report"

[schedules.hourly]
cron = "@hourly"
task = "tqd.noop"
'''


def test_zones_come_from_tzdata_without_system_zone_files(tmp_path: Path):
    cfg = tmp_path / "tqd.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n' + SCHEDULES)
    # An empty PYTHONTZPATH hides /usr/share/zoneinfo from zoneinfo.
    done = run_tqd("config", "check", str(cfg), env={"PYTHONTZPATH": ""})
    assert done.returncode == 0, done.stderr
    assert "2 schedules" in done.stdout


def test_a_bad_schedule_is_one_line_and_exit_2(tmp_path: Path):
    cfg = tmp_path / "tqd.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n' + SCHEDULES.replace("@hourly", "@often"))
    done = run_tqd("config", "check", str(cfg))
    assert done.returncode == 2
    assert one_line_error(done) == (
        f"tqd: {cfg}: schedules.hourly.cron: unknown shortcut '@often' (known: @yearly, "
        "@annually, @monthly, @weekly, @daily, @midnight, @hourly)"
    )
