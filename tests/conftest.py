"""Options shared by the whole test tree (pytest reads them only from here)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--binary", action="store_true", default=False,
        help="build dist/tqd with PyInstaller once and smoke-test the executable "
             "(tests/packaging; .ci/run passes it). $TQD_BINARY=PATH tests a prebuilt one.",
    )
