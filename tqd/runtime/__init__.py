"""Running tasks: the worker pool, handlers and the background roles."""
