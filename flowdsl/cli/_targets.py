"""Loading what the commands are given: a ``TARGET``, ``MODULE_OR_FILE`` arguments, ``--input``.

A module is imported with its prints sent to stderr (stdout is for what the
command produces); a module that raises or calls ``sys.exit()`` while it is
imported becomes one `ImportFailed` message naming the file and line.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from types import ModuleType
from typing import Any

from .._define._registry import workflows
from .._workflow import Workflow
from ..errors import DefinitionError
from ._errors import CliError

__all__ = [
    "ImportFailed",
    "import_source",
    "load_target",
    "not_checkable",
    "read_input",
    "read_json",
    "split_target",
    "stdout_to_stderr",
    "workflows_in",
]


class ImportFailed(CliError):
    """The user's module raised while being imported (not a definition error)."""


def _looks_like_file(ref: str) -> bool:
    return ref.endswith(".py") or "/" in ref or os.sep in ref


def split_target(target: str) -> tuple[str, str]:
    """``pkg.mod:NAME`` or ``path/file.py:NAME`` -> (module or file, NAME or "")."""
    ref, sep, name = target.rpartition(":")
    if not sep or _looks_like_file(name):  # no NAME (a Windows drive letter is not one)
        return target, ""
    if not ref:
        msg = (
            f"TARGET {target!r} names no module or file; write MODULE:NAME or path/to/file.py:NAME"
        )
        raise CliError(msg)
    return ref, name


def _where_raised(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({exc.filename}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if "importlib" not in frame.filename and not frame.filename.startswith("<frozen"):
            return f" ({frame.filename}:{frame.lineno})"
    return ""


def _import_failed(ref: str, exc: Exception) -> CliError:
    return ImportFailed(
        f"importing {ref!r} failed: {type(exc).__name__}: {exc}{_where_raised(exc)}"
    )


def _import_exited(ref: str, exc: SystemExit) -> CliError:
    call = "sys.exit()" if exc.code is None else f"sys.exit({exc.code!r})"
    return ImportFailed(
        f"importing {ref!r} failed: it called {call} at import{_where_raised(exc)}; a module "
        f"flowdsl loads must not exit when imported: put that code under "
        f"'if __name__ == \"__main__\":'"
    )


def _is_directory(ref: str) -> bool:
    """Whether `ref` names a directory rather than a module (a package imports as one)."""
    if not os.path.isdir(ref):
        return False
    return _looks_like_file(ref) or not os.path.isfile(os.path.join(ref, "__init__.py"))


def not_checkable(ref: str) -> str | None:
    """Why `check` cannot take `ref` (a TARGET, a directory) and what to give instead."""
    file, sep, name = ref.rpartition(":")
    if sep and name and not _looks_like_file(name):  # not a Windows drive letter
        instead = f"flowdsl check {file}" if file else "flowdsl check path/to/file.py"
        return (
            f"check takes modules or files, not a TARGET like {ref!r}: it checks every "
            f"workflow a module defines; run: {instead}"
        )
    if _is_directory(ref):
        folder = ref.rstrip("/" + os.sep) or ref
        return (
            f"{ref!r} is a directory; check takes modules or Python files: to check every "
            f"file in it, run: flowdsl check {folder}/*.py"
        )
    return None


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what is printed in the block to stderr: ``sys.stdout`` and descriptor 1 alike.

    For imports and runs: stdout is for what the command produces. Worker processes
    (``executor="process"``) inherit descriptor 1, not ``sys.stdout``, so both are
    pointed at stderr until the block is over.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1 to save (stdout closed): only sys.stdout can move
        with redirect_stdout(sys.stderr):
            yield
        return
    try:
        os.dup2(2, 1)
        with redirect_stdout(sys.stderr):
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def import_source(ref: str) -> ModuleType:
    """Import a module (``pkg.mod``) or a Python file (``path/to/file.py``).

    What the module prints while it is imported goes to stderr (stdout is for
    what the command produces). Raises `DefinitionError` as it is (a bad
    workflow definition) and `CliError` for everything else that goes wrong.
    """
    if not ref:
        msg = "give a module (pkg.module) or a file (path/to/file.py)"
        raise CliError(msg)
    if _is_directory(ref):
        msg = (
            f"{ref!r} is a directory, not a module or a Python file; name a Python file "
            f"in it: {ref.rstrip('/' + os.sep) or ref}/FILE.py"
        )
        raise CliError(msg)
    with stdout_to_stderr():
        if _looks_like_file(ref) or os.path.isfile(ref):
            return _import_file(ref)
        return _import_module(ref)


def _import_module(ref: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path:  # as `python -m` does: modules of the current directory
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(ref)
    except DefinitionError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name is not None and (ref == exc.name or ref.startswith(exc.name + ".")):
            msg = (
                f"no module named {ref!r} (looked in the current directory and sys.path); "
                f"to load a file, give its path: path/to/{ref.rpartition('.')[2]}.py"
            )
            raise CliError(msg) from None
        raise _import_failed(ref, exc) from None
    except SystemExit as exc:
        raise _import_exited(ref, exc) from None
    except Exception as exc:
        raise _import_failed(ref, exc) from None


def _import_file(ref: str) -> ModuleType:
    path = Path(ref)
    if not path.is_file():
        msg = f"no such file: {ref!r}"
        raise CliError(msg)
    path = path.resolve()
    folder = str(path.parent)
    if folder not in sys.path:  # the file's siblings import as they would for `python file.py`
        sys.path.insert(0, folder)
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if getattr(loaded, "__file__", None) == str(path):
            return loaded
        name = f"_flowdsl_file_{abs(hash(str(path))):x}"
    elif not name.isidentifier():
        name = f"_flowdsl_file_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        msg = f"cannot import {ref!r} as Python source"
        raise CliError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except DefinitionError:
        del sys.modules[name]
        raise
    except SystemExit as exc:
        del sys.modules[name]
        raise _import_exited(ref, exc) from None
    except Exception as exc:
        del sys.modules[name]
        raise _import_failed(ref, exc) from None
    return module


def workflows_in(module: ModuleType) -> dict[str, Workflow]:
    """The workflows a module defines (registered from its file) or holds as attributes."""
    found: dict[str, Workflow] = {}
    file = getattr(module, "__file__", None)
    if file is not None:
        real = os.path.realpath(file)
        found = {
            name: wf for name, wf in workflows().items() if os.path.realpath(wf.where.file) == real
        }
    for value in vars(module).values():
        if isinstance(value, Workflow):
            found.setdefault(value.name, value)
    return found


def load_target(target: str) -> Workflow:
    """The workflow a ``TARGET`` names: ``pkg.mod:NAME`` or ``path/file.py:NAME``.

    NAME is a module attribute holding the workflow or its registered name;
    it may be left out when the module defines exactly one workflow.
    """
    ref, name = split_target(target)
    module = import_source(ref)
    defined = workflows_in(module)
    known = ", ".join(repr(n) for n in defined) or "none"
    if not name:
        if len(defined) == 1:
            return next(iter(defined.values()))
        if not defined:
            msg = f"{ref!r} defines no workflow"
        else:
            msg = f"{ref!r} defines several workflows ({known}); pick one: {ref}:{next(iter(defined))}"
        raise CliError(msg)
    value = getattr(module, name, None)
    if isinstance(value, Workflow):
        return value
    wf = defined.get(name) or workflows().get(name)
    if wf is None:
        msg = f"{ref!r} has no workflow {name!r}; workflows defined there: {known}"
        raise CliError(msg)
    return wf


def read_input(value: str | None) -> dict[str, Any] | None:
    """``--input``: a JSON object, ``@file.json``, or ``@-`` for standard input."""
    if value is None:
        return None
    source, data = read_json(value, "--input", "an object")
    if data is None:
        return None
    if not isinstance(data, dict):
        msg = f'{source} must be a JSON object like {{"name": "Ada"}}, got {type(data).__name__}'
        raise CliError(msg)
    return data


def read_json(value: str, option: str, shape: str = "JSON") -> tuple[str, Any]:
    """What `option` was given: any JSON value, ``@file.json``, or ``@-`` for standard input.

    Returns where the text came from (for messages) and the value read;
    `shape` is what a message asks for (``"an object"`` for ``--input``).
    """
    name = option.lstrip("-")
    source = option
    text = value
    if value.startswith("@"):
        where = value[1:]
        if where == "-":
            source, text = "standard input", sys.stdin.read()
        else:
            source = f"{name} file {where!r}"
            try:
                text = Path(where).read_text(encoding="utf-8")
            except OSError as exc:
                msg = f"cannot read {source}: {exc.strerror or exc}"
                raise CliError(msg) from None
            except UnicodeDecodeError as exc:
                msg = (
                    f"cannot read {source}: it is not UTF-8 text ({exc.reason} at byte "
                    f"{exc.start}); save it as UTF-8 JSON"
                )
                raise CliError(msg) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = (
            f"{source} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); "
            f"""pass {shape} like {option} '{{"name": "Ada"}}' or {option} @{name}.json"""
        )
        raise CliError(msg) from None
    except RecursionError:
        msg = f"{source} is nested too deeply to read; flatten it"
        raise CliError(msg) from None
    return source, data
