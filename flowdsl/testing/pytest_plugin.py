"""The flowdsl pytest plugin, loaded through the ``pytest11`` entry point.

Fixtures:

* ``flowdsl_events`` -- an `Events` list of every run's events during the test
  (`flowdsl.testing.capture_events` for the whole test).
* ``flowdsl_registry`` -- the test gets a registry of its own: workflows it
  defines are forgotten afterwards, so throwaway workflows in different tests
  may share names. Workflows registered before the test stay visible. Yields
  a read-only view of the test's registry, by name.

flowdsl itself is imported only when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from flowdsl import Workflow
    from flowdsl.testing import Events

__all__ = ["flowdsl_events", "flowdsl_registry"]


@pytest.fixture
def flowdsl_events() -> Iterator[Events]:
    """The events of every run started during the test, in order."""
    from flowdsl.testing import capture_events

    with capture_events() as events:
        yield events


@pytest.fixture
def flowdsl_registry() -> Iterator[Mapping[str, Workflow]]:
    """A registry of the test's own; workflows defined in the test vanish after it."""
    from flowdsl._define import _registry

    with _registry.isolated() as registered:
        yield MappingProxyType(registered)
