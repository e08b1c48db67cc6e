"""Build hook: compile flowdsl's optional C copy of plain data (flowdsl/_engine/_cfreeze.c).

A wheel (and an editable install) gets the compiled module when a C compiler is at
hand; without one, or with FLOWDSL_NO_CEXT set, the build goes on without it and
flowdsl uses its pure-Python copy, which gives the same results.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "flowdsl/_engine/_cfreeze.c"
MODULE = "flowdsl._engine._cfreeze"


class CompiledCopy(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("FLOWDSL_NO_CEXT"):
            return
        try:
            built = compile_extension(Path(self.root))
        except Exception as exc:  # no compiler, no headers: the pure-Python copy is used
            self.app.display_warning(
                f"flowdsl: {SOURCE} was not compiled ({type(exc).__name__}: {exc}); "
                f"flowdsl will use its pure-Python copy of plain data"
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports it from the source tree
            build_data["force_include"][str(built)] = built.relative_to(self.root).as_posix()


def compile_extension(root: Path) -> Path:
    """Compile the module with setuptools' compiler set-up; put it beside its source."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    extension = Extension(MODULE, [str(root / SOURCE)])
    with tempfile.TemporaryDirectory() as scratch:
        command = build_ext(Distribution({"name": "flowdsl", "ext_modules": [extension]}))
        command.build_lib = str(Path(scratch) / "lib")
        command.build_temp = str(Path(scratch) / "temp")
        command.ensure_finalized()
        command.run()
        made = Path(command.get_ext_fullpath(MODULE))
        target = root / SOURCE.rsplit("/", 1)[0] / made.name
        shutil.copyfile(made, target)
    return target
