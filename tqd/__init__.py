"""tqd: a task queue that runs as one process per host."""

__version__ = "0.1.0"
