"""Helpers for tests that run builds: a site to build, queue a build, run it as the
scheduler would, read its log, wait for something to happen."""

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import docker
from django.db import connections

from builds import logs, scheduler
from builds.executors.docker import container_name
from builds.models import Build, Trigger
from tests.conftest import TEST_IMAGE
from tests.factories import make_connection, make_git_repo, make_trigger, make_worker

T = TypeVar("T")


def site_trigger(account, tmp_path, name: str, files: dict[str, str] | None = None, **fields) -> Trigger:
    """Worker `name`, whose trigger builds, in the busybox test image, a local bare
    repository (tmp_path/<name>.git) holding `files`."""
    url, _ = make_git_repo(tmp_path / f"{name}.git", files or {"README": "hello\n"})
    connection = make_connection(account, clone_url=url)
    return make_trigger(make_worker(account, name), connection, **{"build_image": TEST_IMAGE, **fields})


def queue_build(trigger, branch="main", commit_hash=""):
    return trigger.new_build(branch=branch, commit_hash=commit_hash, source="push")


def run_queued(build) -> Build:
    """What happens when the transaction that queued the build commits."""
    scheduler.dispatch({build.account_id})
    build.refresh_from_db()
    return build


def log_of(build) -> list[tuple[str, str]]:
    return [(line.stream, line.text) for line in logs.all_lines(build)]


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


def at_once(*calls: Callable[[], T]) -> list[T]:
    """Runs each call in a thread of its own, all released together as racing requests
    or processes would be, each with its own database connection. Their results in
    order; the first exception one of them raised is raised here."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], T]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except BaseException as e:  # noqa: BLE001 - raised again by the caller's thread
            errors.append(e)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


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
    wait_for(lambda: any(line.text == text for line in logs.all_lines(build)), message=f"{text!r} in the log")


def docker_container_exists(build) -> bool:
    try:
        docker.from_env().containers.get(container_name(str(build.build_uuid)))
    except docker.errors.NotFound:
        return False
    return True
