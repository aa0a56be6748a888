"""Executors run a build's commands in isolation: `docker` (the real one) and `local`
(a subprocess, inside bubblewrap when installed) for machines without a Docker engine.
Both have the same small shape:

- `executor.environment(build, workspace)` is a context manager: it starts the
  build's sandbox on entry and always removes it on exit, whatever happened; it needs
  nothing from the clone, so the buddy starts it while the clone runs;
- `sandbox.run(command, workdir, env, output)` runs one command with these environment
  variables, feeds `output(stream, bytes)` and returns the exit code; `sandbox.kill()` stops it
  from another thread; `sandbox.limit_hit()` names the resource limit a failed command
  ran into, if any;
- `executor.kill(uuid)`, `executor.remove(uuid)` and `executor.leftovers()` find a
  build's container or processes by name from any process (cancel, the reaper).

The workspace (the clone, mounted into the sandbox) is a directory per build under
BUILDSITE_WORKSPACE_DIR, made and always removed by `workspace()`."""

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import cache
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger(__name__)

Output = Callable[[str, bytes], None]
# Where the workspace appears in a sandbox, and the build's HOME; the repository is
# cloned into its `repo` directory (the layout of Cloudflare's build image).
BUILD_HOME = "/opt/buildhome"


class Sandbox(Protocol):
    # The build's HOME inside the sandbox: the workspace.
    home: str
    # One line for the build log saying how the build is isolated.
    description: str
    # What Build.container_id records ("" where there is no container).
    container_id: str

    def run(self, command: str, workdir: str, env: dict[str, str], output: Output) -> int: ...

    def kill(self) -> None: ...

    def limit_hit(self) -> str | None: ...


class Executor(Protocol):
    name: str

    def environment(self, build, workspace: Path) -> AbstractContextManager[Sandbox]: ...

    def kill(self, build_uuid: str) -> None: ...

    def remove(self, build_uuid: str) -> None: ...

    def leftovers(self) -> set[str]: ...


@cache
def _resolve(choice: str) -> Executor:
    from builds.executors.docker import DockerExecutor, engine_answers
    from builds.executors.local import LocalExecutor

    if choice == "docker":
        return DockerExecutor()
    if choice == "local":
        return LocalExecutor()
    if choice == "auto":
        if engine_answers():
            return DockerExecutor()
        log.warning("No Docker engine answers: builds run as local processes (BUILDSITE_EXECUTOR=auto).")
        return LocalExecutor()
    raise ImproperlyConfigured(f"BUILDSITE_EXECUTOR must be docker, local or auto, not {choice!r}.")


def get_executor() -> Executor:
    """The executor this process runs builds with (resolved once per process)."""
    return _resolve(settings.BUILDSITE_EXECUTOR)


def describe() -> str:
    """The executor this process resolved, in words, for whoever starts Buildsite."""
    executor = get_executor()
    chosen = f"{executor.name} (BUILDSITE_EXECUTOR={settings.BUILDSITE_EXECUTOR})"
    if executor.name == "docker":
        from builds.executors.docker import engine_answers

        return chosen if engine_answers() else f"{chosen}, but NO DOCKER ENGINE ANSWERS: builds will fail"
    if executor.sandboxed:
        return f"{chosen}, inside bubblewrap"
    return f"{chosen}, UNSANDBOXED: install bubblewrap"


def kill_build(build) -> None:
    """Kill the build's container or process, wherever it runs. Best effort: the build
    is stopped in the database already, and its buddy, which checks every second,
    stops on its own even where this process cannot reach its engine."""
    try:
        get_executor().kill(str(build.build_uuid))
    except Exception:  # noqa: BLE001 - cancelling must not fail on an engine problem
        log.warning("could not kill build %s", build.build_uuid, exc_info=True)


def workspace_dir(build_uuid: str) -> Path:
    return Path(settings.BUILDSITE_WORKSPACE_DIR) / str(build_uuid)


@contextlib.contextmanager
def workspace(build_uuid: str) -> Iterator[Path]:
    """An empty directory for the build, removed afterwards whatever happened."""
    path = workspace_dir(build_uuid)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    try:
        yield path
    finally:
        remove_workspace(build_uuid)


def remove_workspace(build_uuid: str) -> None:
    path = workspace_dir(build_uuid)
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        log.warning("could not remove all of workspace %s", path)


def leftovers() -> set[str]:
    """Builds with a container, processes or a workspace on this node. Those that are
    not active are leftovers of a buddy that died; the reaper removes them."""
    root = Path(settings.BUILDSITE_WORKSPACE_DIR)
    workspaces = {path.name for path in root.iterdir()} if root.is_dir() else set()
    return workspaces | get_executor().leftovers()


def remove(build_uuid: str) -> None:
    """Kill and remove everything the build left on this node."""
    get_executor().remove(build_uuid)
    remove_workspace(build_uuid)
