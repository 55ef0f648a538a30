"""The GET routes and static files the source tree's API serves.

Built from ``create_app`` itself, so the executable's tests follow whatever
routes other parts add (the dashboard at ``/``, ``/docs``, ``/metrics``, ...)
without a list to keep up to date.
"""

from __future__ import annotations

from pathlib import Path

from tqd.api.app import Services, create_app
from tqd.clock import SystemClock
from tqd.config import load_config
from tqd.runtime.catalog import Catalog
from tqd.storage.factory import create_storage


def source_routes(scratch: Path) -> tuple[list[str], list[str]]:
    """(paths of GET routes without parameters, URL paths of every static file)."""
    scratch.mkdir(parents=True, exist_ok=True)
    config = load_config(None, env={}, overrides={"storage": f"sqlite://{scratch}/tqd.db"},
                         check_paths=False)
    storage = create_storage(config.storage_url, config)  # never opened: only routes are read
    app = create_app(Services(storage=storage, catalog=Catalog(config), config=config,
                              clock=SystemClock()))
    plain: list[str] = []
    files: list[str] = []
    for resource in app.router.resources():
        info = resource.get_info()
        if "directory" in info:  # add_static: every file below it
            prefix = info["prefix"].rstrip("/")
            folder = Path(info["directory"])
            files += [f"{prefix}/{p.relative_to(folder).as_posix()}"
                      for p in sorted(folder.rglob("*")) if p.is_file()]
        elif "path" in info and any(route.method in ("GET", "*") for route in resource):
            plain.append(info["path"])
    return sorted(set(plain)), files
