"""Where tqd's bundled files (dashboard, API docs, build info) are at run time.

From a source checkout they sit beside the ``tqd`` package (``web_assets/…``
at the repository root). A regular ``pip install`` copies them into the
package as ``tqd/_bundle/…`` (setup.py). In the one-file executable
PyInstaller unpacks them under ``sys._MEIPASS`` with the same relative paths
(packaging/tqd.spec puts them there). Code that serves a file asks this module for its folder instead
of building paths from ``__file__``, so it works in both cases::

    from tqd.assets import asset_dir

    dist = asset_dir("web_assets", "dist")  # None when not built/bundled
"""

from __future__ import annotations

import sys
from pathlib import Path

#: The repository root when running from a checkout (parent of tqd/).
SOURCE_ROOT = Path(__file__).resolve().parent.parent
#: Where a regular (non-editable) install keeps them, inside the package.
INSTALLED_ROOT = Path(__file__).resolve().parent / "_bundle"


def is_frozen() -> bool:
    """Whether this process runs from the PyInstaller executable."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def bundle_root() -> Path:
    """The folder that bundled paths are relative to.

    ``sys._MEIPASS`` in the executable; ``tqd/_bundle`` in an installed
    package; the repository root in a checkout.
    """
    if is_frozen():
        return Path(sys._MEIPASS)  # type: ignore[attr-defined]
    if INSTALLED_ROOT.is_dir():
        return INSTALLED_ROOT
    return SOURCE_ROOT


def asset_path(*parts: str) -> Path:
    """The path of a bundled file or folder (which may not exist)."""
    return bundle_root().joinpath(*parts)


def asset_dir(*parts: str) -> Path | None:
    """The bundled folder ``parts`` (e.g. ``"web_assets", "dist"``), or None if absent."""
    path = asset_path(*parts)
    return path if path.is_dir() else None


def asset_file(*parts: str) -> Path | None:
    """The bundled file ``parts``, or None if absent."""
    path = asset_path(*parts)
    return path if path.is_file() else None
