"""Start the service's components in order; stop the ones started in reverse, exactly once.

A component is anything with a `name`, `start()` and `stop()` (`Component`); `Step` makes one from two
callables, for a piece whose start or stop is a function call (a client to close, a thread to join). A failed
start-up stops what it had started, so it never leaks a thread, a process or an open file:

    lifecycle = Lifecycle()
    with lifecycle.starting():      # an error inside stops what started, in reverse, and is re-raised
        lifecycle.start(a)
        b = B(a)                    # built from what started before it
        lifecycle.start(b)
    ...
    lifecycle.stop()                # b, then a; a stop that fails is logged and the others still run

Stop order is start order reversed, by construction: what consumes another component starts after it and so
stops before it (the receivers stop before the log closes, the flow drains before the sinks are flushed).
Built on `contextlib.ExitStack`, which runs the stops in reverse and forgets each once run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

logger = logging.getLogger(__name__)


class Component(Protocol):
    """One piece of the service. `start` either starts it or raises having cleaned up after itself."""

    @property
    def name(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


C = TypeVar("C", bound=Component)


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Step:
    """A component made of two calls; `Step(name, on_stop=client.close)` registers something already open."""

    name: str
    on_start: Callable[[], object] = _nothing
    on_stop: Callable[[], object] = _nothing

    def start(self) -> None:
        self.on_start()

    def stop(self) -> None:
        self.on_stop()


def _stop(component: Component) -> None:
    logger.debug("stopping %s", component.name)
    try:
        component.stop()
    except Exception:  # one component failing to stop must not keep the others running
        logger.exception("stopping %s failed", component.name)


class Lifecycle:
    """The components started so far, stopped in reverse by `stop()` (idempotent)."""

    def __init__(self) -> None:
        self._stack = ExitStack()

    def start(self, component: C) -> C:
        """Start `component` and remember it for `stop`; return it."""
        logger.debug("starting %s", component.name)
        component.start()
        self._stack.callback(_stop, component)
        return component

    @contextmanager
    def starting(self) -> Iterator[Lifecycle]:
        """Start components inside: an error stops those already started, in reverse, and is re-raised."""
        try:
            yield self
        except BaseException:
            logger.info("start-up failed: stopping what was started")
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every started component, last started first; a second call does nothing."""
        self._stack.close()
