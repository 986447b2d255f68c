"""Module-level worker functions for the pool tests (spawned workers import them by name)."""

import os
import time


def init_plain():
    return {"pid": os.getpid()}


def handler(state, job):
    kind, value = job
    if kind == "sleep":
        time.sleep(value)
    elif kind == "crash":
        os._exit(value)
    return state["pid"], value
