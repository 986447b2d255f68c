"""Exceptions that carry one clear, user-facing line.

Every error the library raises for bad input or a failed simulation is a
:class:`CosimError`; the CLI prints ``str(error)`` as a single line and exits
non-zero, so messages must be complete sentences that say what to change.
This module imports nothing from the package (it sits left of ``specs``).
"""

from __future__ import annotations


class CosimError(Exception):
    """Base class: a problem the user can act on (bad input, missing tool, failed solve)."""


class SpecError(CosimError, ValueError):
    """A specification (array, device, faults) or an input array is invalid."""


class SpiceError(CosimError, RuntimeError):
    """ngspice failed to produce a result."""


class NgspiceNotFoundError(SpiceError):
    """The ngspice shared library could not be loaded."""


class SpiceConvergenceError(SpiceError):
    """ngspice ran but did not converge (or rejected the circuit)."""


class SpiceTimeoutError(SpiceError):
    """An ngspice worker exceeded its time limit and was killed."""


class SpiceCrashError(SpiceError):
    """An ngspice worker process died (segfault, abort) before answering."""
