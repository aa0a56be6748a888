"""Shared fixtures, and the rule that tests needing a real service skip when it is
absent, except where BUILDSITE_REQUIRE names it (CI: docker,postgres,redis): then an
absent service fails the test, and a run in which no such test passed fails too."""

import os
from collections import Counter
from functools import cache

import pytest
from django.conf import settings

from accounts.models import Role
from tests.factories import add_member, make_account, make_user

SERVICE_MARKERS = ("docker", "postgres", "redis")
# Browser tests drive Debian's Chromium through Playwright's Python package.
SERVICE_MARKERS += ("browser",)
CHROMIUM = "/usr/bin/chromium"
REQUIRED = {name.strip() for name in os.environ.get("BUILDSITE_REQUIRE", "").split(",") if name.strip()}
_passed: Counter = Counter()


@cache
def service_problem(name: str) -> str | None:
    """Why the service is unusable here, or None when it answers."""
    if name == "postgres":
        return None if settings.IS_POSTGRES else "DATABASE_URL does not point at PostgreSQL"
    if name == "redis":
        if not settings.REDIS_URL:
            return "REDIS_URL is not set"
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
        except redis.RedisError as e:
            return f"Redis does not answer: {e}"
        return None
    if name == "docker":
        import docker

        try:
            docker.from_env(timeout=5).ping()
        except Exception as e:  # noqa: BLE001 - any failure means no usable engine
            return f"no Docker engine answers: {e}"
        return None
    if name == "browser":
        if not os.path.exists(CHROMIUM):
            return f"{CHROMIUM} is missing (apt-get install chromium)"
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            return "the playwright package is not installed"
        return None
    raise ValueError(name)


@pytest.fixture(autouse=True)
def _require_services(request):
    require_services(request.node)


def require_services(node) -> None:
    """Skip (or, where required, fail) what `node` marks as needing an absent service.
    Module-scoped fixtures that start servers call it too: they run before this file's
    per-test check."""
    for name in SERVICE_MARKERS:
        if node.get_closest_marker(name) and (problem := service_problem(name)):
            if name in REQUIRED:
                pytest.fail(f"{name} is required (BUILDSITE_REQUIRE) but {problem}")
            pytest.skip(problem)


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        for name in SERVICE_MARKERS:
            if name in report.keywords:
                _passed[name] += 1


def pytest_sessionfinish(session, exitstatus):
    if session.config.option.collectonly or getattr(session.config, "workerinput", None):
        return
    missing = sorted(name for name in REQUIRED if _passed[name] == 0)
    if missing and exitstatus in (0, 5):
        session.config.get_terminal_writer().line(
            f"BUILDSITE_REQUIRE: no {', '.join(missing)} test passed; failing the run.", red=True
        )
        session.exitstatus = 1


@pytest.fixture
def owner(db):
    return make_user("alice")


@pytest.fixture
def member(db):
    return make_user("bob")


@pytest.fixture
def outsider(db):
    return make_user("charlie")


@pytest.fixture
def account(owner, member):
    account = make_account("Acme", owner=owner)
    add_member(member, account, Role.DEVELOPER)
    return account


@pytest.fixture
def other_account(outsider):
    return make_account("Globex", owner=outsider)


TEST_IMAGE = "buildsite/test-busybox:latest"


@pytest.fixture
def build_settings(settings, tmp_path):
    """Settings for running real builds in tests: the busybox test image, small
    container limits, a private workspace directory, file:// and http:// clones."""
    settings.BUILDSITE_EXECUTOR = "docker"
    settings.BUILDSITE_DEFAULT_IMAGE = TEST_IMAGE
    settings.BUILDSITE_WORKSPACE_DIR = tmp_path / "workspaces"
    settings.BUILDSITE_CLONE_PROTOCOLS = ["file", "http"]
    settings.BUILDSITE_CONTAINER_MEMORY = "256m"
    settings.BUILDSITE_CONTAINER_CPUS = 1.0
    settings.BUILDSITE_CONTAINER_PIDS = 64
    settings.BUILDSITE_HEARTBEAT_SECONDS = 1
    return settings


@pytest.fixture
def q_sync(monkeypatch):
    """django-q2's own test mode: async_task runs the task at once, in the calling
    thread, through q2's real worker function."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
