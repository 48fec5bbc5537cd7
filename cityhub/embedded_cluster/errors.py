"""How the embedded cluster's steps fail: `ClusterError` names the step, so the CLI can say which one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cityhub import supervisor


class ClusterError(RuntimeError):
    """A step of up/down failed; `step` names it for the user."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Name the step in any unexpected error (an API error, a file system error) raised inside it."""
    try:
        yield
    except ClusterError:
        raise
    except supervisor.ProcessFailed as e:
        # Already written for the user (it names the process and shows its log): no type name in front.
        raise ClusterError(name, str(e)) from e
    except Exception as e:
        raise ClusterError(name, f"{type(e).__name__}: {e}") from e
