"""The progress-reporter protocol through which long work reports to whoever drives it.

The library never imports rich; the CLI passes an object with this shape (a rich progress bar
adapter), tests pass a recorder, and everything else gets :class:`NullReporter`.
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    """Receives progress of one long task."""

    def start(self, total: int, description: str) -> None:
        """A task of ``total`` steps begins."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps are done."""

    def note(self, text: str) -> None:
        """A short live status (e.g. the running loss) to show beside the bar."""

    def finish(self) -> None:
        """The task ended (successfully or not)."""


class NullReporter:
    """A reporter that ignores everything."""

    def start(self, total: int, description: str) -> None:  # noqa: D102
        pass

    def advance(self, steps: int = 1) -> None:  # noqa: D102
        pass

    def note(self, text: str) -> None:  # noqa: D102
        pass

    def finish(self) -> None:  # noqa: D102
        pass
