"""The app's own processes, really started for the tests that need them: daphne serving
the ASGI app, and `manage.py qcluster` running builds. Both run from the project
directory on the pytest-django test database, this run's Redis and the Docker engine,
like one deployment. Each writes its output to a file, whose tail is printed when
the process stops."""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection
from django_q.brokers import get_broker

from tests.builds.running import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The test database (created by pytest-django) as a URL for a subprocess. Reads the
    connection's settings: call it where database access is allowed."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else ""
    return f"postgres://{quote(db['USER'])}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def app_env(workspaces: Path, **overrides: str) -> dict[str, str]:
    """The environment of the app's processes: this one's (Redis, the data directory
    with its keys, the q2 queue name), plus the test database and builds in small
    Docker containers that may clone the local file:// repositories tests make.
    Settings the test process must agree with (the workspace directory, say) are
    mirrored by each module's settings fixture."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "BUILDSITE_EXECUTOR": "docker",
        "BUILDSITE_WORKSPACE_DIR": str(workspaces),
        "BUILDSITE_CLONE_PROTOCOLS": "file",
        "BUILDSITE_CONTAINER_MEMORY": "256m",
        "BUILDSITE_CONTAINER_CPUS": "1",
        **overrides,
    }


class AppProcess:
    """One process of the app, started by `start()` (once: later calls do nothing) and
    ready when `ready()` says so."""

    name = "a process"

    def __init__(self, argv: list[str], env: dict[str, str], output: Path) -> None:
        self.argv = argv
        self.env = env
        self.output = output
        self.process: subprocess.Popen | None = None

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30) -> None:
        if self.process is not None:
            return
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv,
                cwd=settings.BASE_DIR,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own process group: stop() can end the workers it forks too.
                start_new_session=True,
            )
        try:
            wait_for(lambda: self.process.poll() is not None or self.ready(), timeout, f"{self.name} to start")
        except AssertionError:
            self.stop()
            raise AssertionError(f"{self.name} did not start in {timeout} s") from None
        if self.process.poll() is not None:
            code = self.process.returncode
            self.stop()
            raise AssertionError(f"{self.name} exited with code {code}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        tail = self.output.read_text(errors="replace")[-5000:]
        print(f"--- the end of {self.name}'s output ({self.output}):\n{tail}")


class QCluster(AppProcess):
    """`manage.py qcluster` with BUILDSITE_Q_WORKERS workers."""

    name = "the q2 cluster"

    def __init__(self, env: dict[str, str], output: Path) -> None:
        super().__init__([sys.executable, "manage.py", "qcluster"], env, output)

    def ready(self) -> bool:
        return b"running." in self.output.read_bytes()

    def start(self, timeout: float = 30) -> None:
        if self.process is None:
            # Tasks an earlier run left in the queue name builds that are gone.
            get_broker().purge_queue()
        super().start(timeout)


class Daphne(AppProcess):
    """daphne serving buildsite.asgi on a free port of 127.0.0.1, at `url`."""

    name = "daphne"

    def __init__(self, env: dict[str, str], output: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "buildsite.asgi:application"]
        super().__init__(argv, env, output)

    def ready(self) -> bool:
        try:
            urllib.request.urlopen(self.url + "/login/", timeout=1)  # noqa: S310 - our own server
        except OSError:
            return False
        return True

    def generic(
        self, method: str, path: str, data: bytes = b"", content_type: str = "", headers: dict | None = None
    ) -> "Reply":
        """A request over HTTP, called like Django's test client (so
        tests.builds.payloads.deliver delivers webhooks to this server)."""
        headers = {**(headers or {}), "Content-Type": content_type}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own server
                return Reply(response.status, response.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read())


@dataclass
class Reply:
    status_code: int
    content: bytes

    def json(self) -> dict:
        return json.loads(self.content)
