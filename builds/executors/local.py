"""The local executor: a build's commands as processes on this machine, for machines
without a Docker engine. Inside bubblewrap when it is installed (only the system
directories, read-only, and the workspace are visible; no access to the user's home
or Buildsite's data), else unsandboxed with a loud warning in the build log. There
are no memory or process limits here; production runs the docker executor."""

import contextlib
import getpass
import logging
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from builds.executors import BUILD_HOME, Output

log = logging.getLogger(__name__)

# Every build process carries its build's id in its environment, which is how another
# process finds them to kill (cancel, the reaper) without a pid file that could go stale.
BUILD_UUID_VARIABLE = "WORKERS_CI_BUILD_UUID"
UNSANDBOXED_WARNING = (
    "WARNING: bubblewrap (bwrap) is not installed, so this build runs UNSANDBOXED as user {user} "
    "with full access to this machine. Install bubblewrap, or use the docker executor."
)


class Process:
    """A command in its own process group with stdout and stderr streamed to
    `output` as they come; kill() ends the whole group from any thread."""

    def __init__(self, argv: list[str], *, cwd: str | Path, env: dict[str, str], output: Output) -> None:
        self.output = output
        self._lock = threading.Lock()
        self._popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def wait(self) -> int:
        """Streams the output until both pipes close, then returns the exit code
        (128 + signal number for a process killed by a signal, like a shell)."""
        stderr = threading.Thread(target=self._pump, args=("stderr", self._popen.stderr), daemon=True)
        stderr.start()
        self._pump("stdout", self._popen.stdout)
        stderr.join()
        code = self._popen.wait()
        return 128 - code if code < 0 else code

    def _pump(self, stream: str, pipe) -> None:
        with pipe:
            while chunk := os.read(pipe.fileno(), 65536):
                # One output call at a time: the log pump splits lines per stream but
                # is not itself thread-safe.
                with self._lock:
                    self.output(stream, chunk)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signal.SIGKILL)


def bwrap_argv(workspace: Path, workdir: str) -> list[str]:
    argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-all", "--share-net"]
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc"):
        argv += ["--ro-bind-try", path, path]
    # A private /tmp inside the sandbox, not the host's.
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108
    argv += ["--bind", str(workspace), BUILD_HOME, "--chdir", workdir]
    if os.geteuid() == 0:
        argv += ["--cap-drop", "ALL"]
    return argv


class LocalSandbox:
    container_id = ""

    def __init__(self, workspace: Path, sandboxed: bool) -> None:
        self.workspace = workspace
        self.sandboxed = sandboxed
        self.home = BUILD_HOME if sandboxed else str(workspace)
        if sandboxed:
            self.description = "Running the commands as local processes inside bubblewrap."
        else:
            self.description = UNSANDBOXED_WARNING.format(user=getpass.getuser())
        self._process: Process | None = None
        self._killed = threading.Event()

    def run(self, command: str, workdir: str, env: dict[str, str], output: Output) -> int:
        argv = ["/bin/sh", "-c", command]
        if self.sandboxed:
            argv = [*bwrap_argv(self.workspace, workdir), *argv]
            cwd = self.workspace
        else:
            cwd = workdir
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **env, "HOME": self.home}
        self._process = Process(argv, cwd=cwd, env=env, output=output)
        if self._killed.is_set():
            self._process.kill()
        return self._process.wait()

    def kill(self) -> None:
        self._killed.set()
        if self._process is not None:
            self._process.kill()

    def limit_hit(self) -> str | None:
        return None


class LocalExecutor:
    name = "local"

    def __init__(self) -> None:
        self.sandboxed = shutil.which("bwrap") is not None

    @contextlib.contextmanager
    def environment(self, build, workspace: Path) -> Iterator[LocalSandbox]:
        sandbox = LocalSandbox(workspace, self.sandboxed)
        try:
            yield sandbox
        finally:
            # Background processes a command left behind go with the build.
            sandbox.kill()
            self.kill(str(build.build_uuid))

    def kill(self, build_uuid: str) -> None:
        for pid in build_processes().get(build_uuid, ()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                pgid = os.getpgid(pid)
                if pgid != os.getpgid(0):
                    os.killpg(pgid, signal.SIGKILL)

    def remove(self, build_uuid: str) -> None:
        self.kill(build_uuid)

    def leftovers(self) -> set[str]:
        return set(build_processes())


def build_processes() -> dict[str, list[int]]:
    """Pids of this machine's build processes, by build, from their environment. When
    Buildsite itself runs inside a build (its own CI), that build is not one of ours."""
    marker = f"{BUILD_UUID_VARIABLE}=".encode()
    ours = os.environ.get(BUILD_UUID_VARIABLE)
    found: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(marker):
                build_uuid = variable[len(marker) :].decode(errors="replace")
                if build_uuid != ours:
                    found.setdefault(build_uuid, []).append(int(entry.name))
                break
    return found
