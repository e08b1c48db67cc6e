"""Helpers for testing workflows built with flowdsl (see docs/testing.md).

* `override_steps` -- run a workflow with some steps swapped for fakes
  (functions, or plain outcomes wrapped in a recording `Fake`).
* `capture_events` -- the events of every run inside a block, as an `Events` list.
* `fake_clock` -- virtual time: sleeps, wait timeouts, retry backoff and
  schedule ticks follow it, and move when the test calls ``advance(seconds)``.
* `check_reducer` -- property-test a parallel or foreach block's ``into=`` reducer (needs
  hypothesis).
* `flowdsl.testing.strategies` -- hypothesis strategies: results, outcomes,
  branch results and whole random workflows (needs hypothesis).
* The pytest plugin (loaded automatically) adds the fixtures ``flowdsl_events``
  and ``flowdsl_registry``.

This package imports without hypothesis; only `check_reducer` and
`flowdsl.testing.strategies` need it.
"""

from ._capture import Events, capture_events
from ._clock import FakeClock, fake_clock
from ._fakes import Fake, override_steps
from ._reducer import check_reducer

__all__ = [
    "Events",
    "Fake",
    "FakeClock",
    "capture_events",
    "check_reducer",
    "fake_clock",
    "override_steps",
]
