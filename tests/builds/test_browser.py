"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a
daphne subprocess serving the app on the test database with the Redis channel layer.
Builds are driven by tests.buddy_stand_in.ScriptedBuild from a thread of this process,
through the same functions the Build Buddy uses."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client

from builds.models import Build, BuildOutcome, BuildStatus
from tests.buddy_stand_in import ScriptedBuild
from tests.conftest import CHROMIUM, require_services
from tests.factories import make_build, make_trigger, make_worker

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BASE_DIR = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The test database (created by pytest-django) as a URL for the subprocess."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else ""
    return f"postgres://{quote(db['USER'])}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="module")
def server(request, django_db_setup, django_db_blocker, tmp_path_factory):
    """daphne serving the app on a free port, on the test database and real Redis."""
    require_services(request.node)
    with django_db_blocker.unblock():
        call_command("collectstatic", interactive=False, verbosity=0)
        url = database_url()
    port = free_port()
    log_path = tmp_path_factory.mktemp("daphne") / "daphne.log"
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": settings.REDIS_URL}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "buildsite.asgi:application"],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "/login/", timeout=1)  # noqa: S310 - our own server
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("daphne did not start:\n" + log_path.read_text())
            time.sleep(0.2)
    yield base
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def browser(request):
    require_services(request.node)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which Django's
    # ORM takes for an async context; the ORM calls here are plain synchronous ones.
    unsafe = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if unsafe is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE")
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = unsafe


@pytest.fixture
def login(browser, server, transactional_db):
    """Opens a browser context logged in as `user` (a session made by Django's test
    client, which the daphne subprocess reads from the same database)."""
    contexts = []

    def open_as(user):
        client = Client()
        client.force_login(user)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server}])
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15000)
        page.on("dialog", lambda dialog: dialog.accept())
        return page

    yield open_as
    # Close pages (and their websockets) before pytest-django empties the tables.
    for context in contexts:
        context.close()


@pytest.fixture
def build(account):
    worker = make_worker(account, "marketing-site")
    trigger = make_trigger(worker, build_command="npm run build")
    return make_build(
        trigger, commit_hash="3f2c1e9" + "0" * 33, commit_message="Add pricing page\n\nand tests", author="dana"
    )


def script(count: int) -> list[tuple[str, str]]:
    """Lines like a real build's: plain, coloured, stderr."""
    lines = []
    for i in range(1, count + 1):
        if i % 10 == 0:
            lines.append(("stderr", f"warn: step {i} is slow"))
        elif i % 5 == 0:
            lines.append(("stdout", f"\x1b[32m✓\x1b[0m step {i} \x1b[1mdone\x1b[0m"))
        else:
            lines.append(("stdout", f"step {i}: compiling module-{i}.js"))
    return lines


def visible_text(line: tuple[str, str]) -> str:
    return line[1].replace("\x1b[32m", "").replace("\x1b[0m", "").replace("\x1b[1m", "")


def log_state(page) -> dict:
    return page.evaluate(
        """() => {
            const root = document.querySelector('#log');
            return {
                ids: [...root.querySelectorAll('.ln')].map((el) => el.id),
                texts: [...root.querySelectorAll('.ln-text')].map((el) => el.textContent),
                dropped: root.dataset.dropped, gaps: root.dataset.gaps, connections: root.dataset.connections,
            };
        }"""
    )


def test_a_live_build_streams_in_order_and_resumes_after_a_dropped_socket(
    login, server, member, account, build, tmp_path, capsys
):
    lines = script(60)
    page = login(member)
    page.goto(f"{server}/accounts/{account.id}/builds/{build.build_uuid}/")
    page.wait_for_selector("[data-live-state][data-state='live']")
    page.evaluate("window.loadedOnce = true")
    producer = ScriptedBuild(build, lines, batch=2, interval=0.2)
    producer.start()
    page.wait_for_selector("#L12")
    page.wait_for_selector("#build-summary .status--running")

    screenshot = tmp_path / "build-page-live.png"
    page.screenshot(path=str(screenshot))
    with capsys.disabled():  # shown in every run, so CI logs say where the artifact is
        print(f"\nscreenshot of the live build page: {screenshot}")

    # Drop the socket mid-build: lines printed meanwhile must come from the cursor.
    page.evaluate("buildsiteLog.socket.close()")
    page.wait_for_selector("[data-live-state][data-state='reconnecting']", state="attached")
    producer.finish()
    page.wait_for_selector("#L60")
    page.wait_for_selector("#build-summary .status--success")

    state = log_state(page)
    assert state["ids"] == [f"L{i}" for i in range(1, 61)]
    assert state["texts"] == [visible_text(line) for line in lines]
    assert (state["dropped"], state["gaps"], state["connections"]) == ("0", "0", "2")
    assert page.evaluate("window.loadedOnce") is True  # no reload: it all came over the socket
    assert page.locator("#L5 .ln-text .f2").inner_text() == "✓"  # ANSI green
    assert "ln-stderr" in page.locator("#L10").get_attribute("class")
    assert page.locator("[data-action='retry']").is_visible()
    assert page.locator(".phase--success .phase-name").all_text_contents() == ["clone", "build", "deploy"]


def scroll_state(page) -> dict:
    return page.eval_on_selector(
        "[data-log-body]",
        "(el) => ({top: el.scrollTop, bottom: el.scrollHeight - el.clientHeight})",
    )


def test_follow_pauses_on_scroll_up_a_line_links_and_cancel_stops_the_build(login, server, member, account, build):
    producer = ScriptedBuild(build, script(1000), batch=5, interval=0.1)
    producer.start()
    assert producer.started_running.wait(10)
    page = login(member)
    # A link to a line highlights it and holds the view there while lines keep coming.
    page.goto(f"{server}/accounts/{account.id}/builds/{build.build_uuid}/#L3")
    page.wait_for_selector("#L3.target")
    page.wait_for_selector("#L120")
    assert scroll_state(page)["top"] < 100 and page.is_visible("[data-log-follow]")
    # Follow jumps to the tail and stays there as lines arrive.
    page.click("[data-log-follow]")
    page.wait_for_selector("#L200")
    state = scroll_state(page)
    assert state["bottom"] - state["top"] < 10 and not page.is_visible("[data-log-follow]")
    # Scrolling up pauses following.
    page.eval_on_selector("[data-log-body]", "(el) => { el.scrollTop = 0; }")
    page.wait_for_selector("[data-log-follow]", state="visible")
    page.wait_for_selector("#L300")
    assert scroll_state(page)["top"] == 0
    # Timestamps are one click away.
    assert not page.is_visible("#L1 .ln-ts")
    page.check("[data-log-option='timestamps']")
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", page.inner_text("#L1 .ln-ts"))

    page.click("[data-action='cancel']")
    page.wait_for_selector("#build-summary .status--cancelled")
    assert "Cancelled by bob." in page.locator("[data-reason]").inner_text()
    producer.finish()
    build.refresh_from_db()
    assert (build.status, build.build_outcome) == (BuildStatus.STOPPED, BuildOutcome.CANCELLED)
    assert producer.written < 1000


def test_the_worker_page_shows_new_builds_and_status_changes_live(login, server, member, account, build):
    page = login(member)
    page.goto(f"{server}/accounts/{account.id}/workers/{build.worker.tag}/")
    row = f"tr[data-build-uuid='{build.build_uuid}']"
    page.wait_for_selector(f"{row} .status--queued")
    newer = make_build(build.trigger, branch="feature/pricing", commit_message="Try a new layout")
    ScriptedBuild(newer, script(4), batch=2, interval=0.1).start()
    page.wait_for_selector(f"tr[data-build-uuid='{newer.build_uuid}'] .status--success")
    assert "Try a new layout" in page.locator(f"tr[data-build-uuid='{newer.build_uuid}']").inner_text()
    # Newest first, and the older build's row is still there, unchanged.
    uuids = page.eval_on_selector_all("tr[data-build-uuid]", "rows => rows.map((r) => r.dataset.buildUuid)")
    assert uuids == [str(newer.build_uuid), str(build.build_uuid)]
    assert Build.objects.get(pk=newer.pk).build_outcome == BuildOutcome.SUCCESS


def test_a_user_of_another_account_gets_404_and_a_refused_socket(login, server, outsider, other_account, build):
    page = login(outsider)
    response = page.goto(f"{server}/accounts/{build.account_id}/builds/{build.build_uuid}/")
    assert response.status == 404
    outcome = page.evaluate(
        """(path) => new Promise((resolve) => {
            const socket = new WebSocket('ws://' + location.host + path);
            socket.onopen = () => resolve('open');
            socket.onclose = (event) => resolve('closed ' + event.code);
        })""",
        f"/ws/accounts/{build.account_id}/builds/{build.build_uuid}/",
    )
    assert outcome == "closed 1006"  # the handshake was refused
