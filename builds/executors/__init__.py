"""Executors run a build's commands: `docker` (the real one) and `local`. (Issue 4.)"""


def kill_build(build) -> None:
    """Kill the build's container or process, wherever it runs."""
