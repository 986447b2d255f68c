"""Shared CLI plumbing: consoles, one-line errors, and the rich progress reporter."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cosim.errors import CosimError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def new_app(help: str) -> typer.Typer:
    """A typer app (the top level or a command group) with this CLI's settings: no args shows
    help, no pretty tracebacks, and plain help text, so that ``[run]`` or ``[-quick]`` in an
    option's help prints as written instead of being read as rich markup. Every group must be
    made here: typer does not pass these settings down to groups added with ``add_typer``."""
    return typer.Typer(help=help, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)


def setup_logging(verbose: bool) -> None:
    """Route the library's logging through rich on stderr."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one red line on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def friendly_errors(fn: F) -> F:
    """Turn library errors and Ctrl-C into one line and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CosimError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted; finished work is kept and no file is half-written: run the same command "
                       "again to resume.", 130) from None
        except OSError as exc:
            raise fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None

    return wrapper  # type: ignore[return-value]


class RichReporter:
    """A :class:`cosim.report.Reporter` that draws a rich progress bar (rate and time left).

    On a terminal the bar disappears when its task ends. When the console is not a terminal
    (output sent to a log file, a batch job), no bar can be drawn, so each task leaves one line
    instead: its description, steps done out of its total, elapsed seconds and its last note.
    """

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or err_console
        self._progress: Progress | None = None
        self._task: Any = None

    def start(self, total: int, description: str) -> None:  # noqa: D102
        self._progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=self._console,
            transient=True,
            disable=not self._console.is_terminal,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, note="")

    def advance(self, steps: int = 1) -> None:  # noqa: D102
        if self._progress is not None:
            self._progress.advance(self._task, steps)

    def note(self, text: str) -> None:  # noqa: D102
        if self._progress is not None:
            self._progress.update(self._task, note=text)

    def finish(self) -> None:  # noqa: D102
        if self._progress is None:
            return
        self._progress.stop()
        if not self._console.is_terminal:
            task = self._progress.tasks[0]
            total = "?" if task.total is None else f"{task.total:g}"
            note = f" ({task.fields['note']})" if task.fields.get("note") else ""
            self._console.print(f"{task.description}: {task.completed:g}/{total} in {task.elapsed or 0.0:.0f} s{note}",
                                highlight=False, markup=False, soft_wrap=True)
        self._progress = None
