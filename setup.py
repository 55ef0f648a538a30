"""Build hook: ship the prebuilt dashboard inside the installed tqd package.

Everything else about the package is in pyproject.toml. ``web_assets/dist``
lives beside the package in the repository; a regular ``pip install .``
copies it to ``tqd/_bundle/web_assets/dist`` so an installed tqd serves the
dashboard too (tqd/assets.py looks there).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ASSETS = ("web_assets", "dist")


class BuildWithAssets(build_py):
    """build_py that also copies the prebuilt web assets into the package."""

    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent.joinpath(*ASSETS)
        if not source.is_dir():
            return
        target = Path(self.build_lib, "tqd", "_bundle", *ASSETS)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)


setup(cmdclass={"build_py": BuildWithAssets})
