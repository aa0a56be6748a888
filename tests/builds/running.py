"""Helpers for tests that run builds: queue one, run it as the scheduler would, read
its log, wait for something to happen, run Buildsite's own processes."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker
from django.conf import settings
from django.db import connections

from builds import scheduler
from builds.executors.docker import container_name
from builds.models import Build, LogLine


def queue_build(trigger, branch="main", commit_hash=""):
    return trigger.new_build(branch=branch, commit_hash=commit_hash, source="push")


def run_queued(build) -> Build:
    """What happens when the transaction that queued the build commits."""
    scheduler.dispatch({build.account_id})
    build.refresh_from_db()
    return build


def log_of(build) -> list[tuple[str, str]]:
    return list(LogLine.objects.filter(build=build).order_by("seq").values_list("stream", "text"))


def output_of(build) -> list[tuple[str, str]]:
    return [(stream, text) for stream, text in log_of(build) if stream != "system"]


def system_lines(build) -> str:
    return "\n".join(text for stream, text in log_of(build) if stream == "system")


def wait_for(condition, timeout: float = 20, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message}")


def in_thread(target, *args) -> threading.Thread:
    def run() -> None:
        try:
            target(*args)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_for_line(build, text: str) -> None:
    wait_for(lambda: LogLine.objects.filter(build=build, text=text).exists(), message=f"{text!r} in the log")


def docker_container_exists(build) -> bool:
    try:
        docker.from_env().containers.get(container_name(str(build.build_uuid)))
    except docker.errors.NotFound:
        return False
    return True


class Background:
    """One of Buildsite's processes (`manage.py qcluster`, daphne) with its own
    environment, in a session of its own so stopping it stops its children; its output
    goes to a file, whose end is printed when it stops."""

    def __init__(self, argv: list[str], env: dict[str, str], output: Path, ready: Callable[[], bool], what: str):
        self.argv = argv
        self.env = env
        self.output = output
        self.ready = ready
        self.what = what
        self.process: subprocess.Popen | None = None

    def start(self) -> "Background":
        """Starts the process, without waiting for it to be ready."""
        if self.process is None:
            with self.output.open("ab") as out:
                self.process = subprocess.Popen(
                    self.argv,
                    cwd=settings.BASE_DIR,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.what} exited: {self.output.read_text()[-3000:]}")
            return self.ready()

        wait_for(up, timeout=timeout, message=f"{self.what} to start")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # Whatever of its session is left (a worker that outlived its parent).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None
        print(f"--- {self.what}:\n{self.output.read_text()[-5000:]}")


def qcluster(env: dict[str, str], output: Path) -> Background:
    return Background(
        [sys.executable, "manage.py", "qcluster"],
        env,
        output,
        ready=lambda: b"running." in output.read_bytes(),
        what="the q2 cluster",
    )
