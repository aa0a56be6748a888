"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a
daphne subprocess serving the app and a `manage.py qcluster` subprocess running the
builds, both on the test database, the Redis channel layer and broker, and Docker.
Builds are real: a commit is pushed to a local git repository and GitHub's signed
push webhook is delivered to daphne; the cluster clones the commit and runs, in the
busybox test image, a script that prints lines over several seconds."""

import json
import os
import re

import pytest
from django.core.management import call_command
from django.test import Client

from builds import logs
from builds.models import Build, BuildOutcome, BuildStatus
from tests.builds import payloads
from tests.builds.processes import Daphne, QCluster, app_env
from tests.builds.running import docker_container_exists, log_of, site_trigger, wait_for, wait_for_line
from tests.conftest import CHROMIUM, require_services
from tests.factories import commit_files

pytestmark = [
    pytest.mark.browser,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
]

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

# `sh build.sh COUNT EVERY` prints COUNT lines like a real build's (plain, coloured,
# stderr), sleeping 0.1 s after every EVERY lines. Octal escapes keep the file ASCII:
# \342\234\223 is a check mark.
BUILD_SCRIPT = r"""i=1
while [ "$i" -le "$1" ]; do
  if [ $((i % 10)) -eq 0 ]; then
    echo "warn: step $i is slow" >&2
  elif [ $((i % 5)) -eq 0 ]; then
    printf '\033[32m\342\234\223\033[0m step %s \033[1mdone\033[0m\n' "$i"
  else
    echo "step $i: compiling module-$i.js"
  fi
  if [ $((i % $2)) -eq 0 ]; then sleep 0.1; fi
  i=$((i + 1))
done
"""


def script(count: int) -> list[tuple[str, str]]:
    """The (stream, text) lines `sh build.sh COUNT ...` prints."""
    lines = []
    for i in range(1, count + 1):
        if i % 10 == 0:
            lines.append(("stderr", f"warn: step {i} is slow"))
        elif i % 5 == 0:
            lines.append(("stdout", f"\x1b[32m✓\x1b[0m step {i} \x1b[1mdone\x1b[0m"))
        else:
            lines.append(("stdout", f"step {i}: compiling module-{i}.js"))
    return lines


def visible(text: str) -> str:
    """A line as the page shows it: colours rendered, escape sequences gone."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.fixture(scope="module")
def app(request, django_db_setup, django_db_blocker, tmp_path_factory):
    """daphne and the q2 cluster in one environment, as one deployment; yields daphne."""
    require_services(request.node)
    with django_db_blocker.unblock():
        call_command("collectstatic", interactive=False, verbosity=0)
        env = app_env(tmp_path_factory.mktemp("workspaces"), BUILDSITE_Q_WORKERS="2")
    logs = tmp_path_factory.mktemp("app")
    server, cluster = Daphne(env, logs / "daphne.log"), QCluster(env, logs / "qcluster.log")
    try:
        server.start()
        cluster.start()
        yield server
    finally:
        cluster.stop()
        server.stop()


@pytest.fixture
def server(app, transactional_db):
    """The app's daphne. Tests wait for their builds to end; after one that failed
    mid-build, its builds are cancelled and their containers gone before pytest-django
    empties the tables."""
    yield app
    builds = list(Build.objects.order_by("created_on"))
    for build in builds:
        build.cancel("The test ended before the build did.")
        print(f"build {build.build_uuid}: {build.build_outcome} {build.reason!r}")  # shown when the test failed
        print("\n".join(f"  {stream}: {text}" for stream, text in log_of(build)[-10:]))
    wait_for(lambda: not any(map(docker_container_exists, builds)), message="the test's containers to go")


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
def login(browser, server):
    """Opens a browser context logged in as `user` (a session made by Django's test
    client, which daphne reads from the same database)."""
    contexts = []

    def open_as(user):
        client = Client()
        client.force_login(user)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server.url}])
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
def site(account, tmp_path):
    """The worker "marketing-site", built from a local repository holding build.sh."""
    return site_trigger(
        account,
        tmp_path,
        "marketing-site",
        {"build.sh": BUILD_SCRIPT},
        deploy_command="echo deployed",
        non_production_deploy_command="echo uploaded a preview",
    )


def push(server, site, message: str, branch: str = "main") -> Build:
    """A developer pushes a commit to the site's repository, and GitHub delivers its
    signed push webhook to the server: the build it queued."""
    connection = site.repo_connection
    commit = commit_files(connection.clone_url.removeprefix("file://"), {"build.sh": BUILD_SCRIPT}, branch, message)
    payload = payloads.github_push(
        int(connection.repo_id),
        ref=f"refs/heads/{branch}",
        after=commit,
        commits=[payloads.github_commit(commit, message, modified=["build.sh"])],
    )
    reply = payloads.deliver(server, connection, payload)
    assert reply.status_code == 202, reply.content
    (build_uuid,) = reply.json()["builds"]
    return Build.objects.get(build_uuid=build_uuid, commit_hash=commit)


def build_page(server, build) -> str:
    return f"{server.url}/accounts/{build.account_id}/builds/{build.build_uuid}/"


def log_state(page) -> dict:
    return page.evaluate(
        """() => {
            const root = document.querySelector('#log');
            return {
                ids: [...root.querySelectorAll('.ln')].map((el) => el.id),
                lines: [...root.querySelectorAll('.ln')].map((el) => [
                    [...el.classList].find((c) => c.startsWith('ln-')).slice(3),
                    el.querySelector('.ln-text').textContent,
                ]),
                dropped: root.dataset.dropped, gaps: root.dataset.gaps, connections: root.dataset.connections,
            };
        }"""
    )


def wait_for_text(page, text: str, prefix: bool = False) -> None:
    """Until the log on the page shows a line `text` (or one starting with it)."""
    page.wait_for_function(
        """([text, prefix]) => [...document.querySelectorAll('#log .ln-text')].some(
            (el) => prefix ? el.textContent.startsWith(text) : el.textContent === text)""",
        arg=[text, prefix],
    )


def build_socket_messages(page) -> list[list[dict]]:
    """Every message each of the page's build websockets received, one list per socket
    in the order they were made (filled while Playwright runs; an attempt that never
    connected has an empty list)."""
    sockets: list[list[dict]] = []

    def opened(ws) -> None:
        if "/builds/" in ws.url:
            messages: list[dict] = []
            sockets.append(messages)
            ws.on("framereceived", lambda payload: messages.append(json.loads(payload)))

    page.on("websocket", opened)
    return sockets


def test_a_live_build_streams_in_order_and_resumes_after_a_dropped_socket(
    login, server, member, account, site, tmp_path, capsys
):
    lines = script(100)  # over ten seconds
    site.build_command = command = "sh build.sh 100 1"
    site.save()
    page = login(member)
    sockets = build_socket_messages(page)
    build = push(server, site, "Add pricing page\n\nand tests")
    page.goto(build_page(server, build))
    page.wait_for_selector("[data-live-state][data-state='live']")
    page.evaluate("window.loadedOnce = true")
    wait_for_text(page, visible(lines[11][1]))
    page.wait_for_selector("#build-summary .status--running")

    screenshot = tmp_path / "build-page-live.png"
    page.screenshot(path=str(screenshot))
    with capsys.disabled():  # shown in every run, so CI logs say where the artifact is
        print(f"\nscreenshot of the live build page: {screenshot}")

    # The network drops mid-build, and stays down while the build prints ten more lines:
    # those must come from the cursor when the page reconnects by itself.
    page.evaluate("buildsiteLog.socket.close()")
    page.context.set_offline(True)
    page.wait_for_selector("[data-live-state][data-state='reconnecting']", state="attached")
    seen = int(page.get_attribute("#log", "data-last-seq"))
    wait_for(lambda: Build.objects.get(pk=build.pk).log_seq > seen + 10, message="ten more lines")
    page.context.set_offline(False)
    page.wait_for_selector("#build-summary .status--success", timeout=30000)

    stored = log_of(build)
    page.wait_for_selector(f"#L{len(stored)}")
    state = log_state(page)
    # The page shows the stored log, every line once, in order: the script's lines
    # framed by the buddy's system lines (clone, container, phases, summary).
    assert state["ids"] == [f"L{i}" for i in range(1, len(stored) + 1)]
    assert state["lines"] == [[stream, visible(text)] for stream, text in stored]
    assert [line for line in stored if line[0] != "system"] == [*lines, ("stdout", "deployed")]
    texts = [text for _, text in stored]
    start = texts.index(f"Build command: {command}") + 1
    assert stored[start : start + len(lines)] == lines
    assert texts[start + len(lines)].startswith("Build command finished in")
    assert texts[-1].startswith("Build succeeded in")
    assert (state["dropped"], state["gaps"], state["connections"]) == ("0", "0", "2")
    assert page.evaluate("window.loadedOnce") is True  # no reload: it all came over the socket
    # The second socket began with the lines printed while the network was down (the
    # backlog after its cursor, sent before its first status), then carried on live.
    _, second = [messages for messages in sockets if messages]
    backlog, status = second[0], second[1]
    assert backlog["type"] == "logs" and status["type"] == "status"
    assert backlog["lines"][0]["seq"] == seen + 1 and backlog["lines"][-1]["seq"] > seen + 10
    assert any(message["type"] == "logs" for message in second[2:])

    row = f"#L{start + 5}"  # the script's 5th line: green check mark, bold "done"
    assert page.locator(f"{row} .ln-text .f2").inner_text() == "✓"
    assert page.locator(f"{row} .ln-text .a-b").inner_text() == "done"
    assert "ln-stderr" in page.locator(f"#L{start + 10}").get_attribute("class")
    assert page.locator("[data-action='retry']").is_visible()
    assert page.locator(".phase--success .phase-name").all_text_contents() == ["clone", "build", "deploy"]
    build.refresh_from_db()
    assert (build.status, build.build_outcome) == (BuildStatus.STOPPED, BuildOutcome.SUCCESS)


def scroll_state(page) -> dict:
    return page.eval_on_selector(
        "[data-log-body]",
        "(el) => ({top: el.scrollTop, bottom: el.scrollHeight - el.clientHeight})",
    )


def test_follow_pauses_on_scroll_up_a_line_links_and_cancel_stops_the_build(login, server, member, account, site):
    # 50 lines a second for 100 seconds: cancelled long before the end.
    site.build_command = "sh build.sh 5000 5"
    site.save()
    build = push(server, site, "Compile everything")
    wait_for_line(build, "step 3: compiling module-3.js")
    [linked] = [line.seq for line in logs.all_lines(build) if line.text == "step 3: compiling module-3.js"]
    page = login(member)
    # A link to a line highlights it and holds the view there while lines keep coming.
    page.goto(f"{build_page(server, build)}#L{linked}")
    page.wait_for_selector(f"#L{linked}.target")
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
    # The buddy, in the cluster, found its container killed and says so last.
    wait_for_text(page, "Build cancelled after", prefix=True)
    assert page.locator("#log .ln-text").last.inner_text().endswith(": Cancelled by bob.")
    wait_for(lambda: not docker_container_exists(build), timeout=10, message="the container to go")
    build.refresh_from_db()
    assert (build.status, build.build_outcome, build.reason) == (
        BuildStatus.STOPPED,
        BuildOutcome.CANCELLED,
        "Cancelled by bob.",
    )
    assert [phase["name"] for phase in build.phases] == ["clone", "build"]
    # The script stopped where it was killed: its lines end, unfinished, before that last line.
    stored = log_of(build)
    assert stored[-1][1] == page.locator("#log .ln-text").last.inner_text()
    printed = [text for stream, text in stored if stream == "stdout"]
    planned = [text for stream, text in script(5000) if stream == "stdout"]
    assert 200 < len(printed) < len(planned) and printed == planned[: len(printed)]


def test_the_worker_page_shows_new_builds_and_status_changes_live(login, server, member, account, site):
    site.build_command = "sh build.sh 3 1"
    site.save()
    older = push(server, site, "Add pricing page")
    wait_for(lambda: Build.objects.get(pk=older.pk).status == BuildStatus.STOPPED, message="the first build to stop")
    page = login(member)
    page.goto(f"{server.url}/accounts/{account.id}/workers/{site.worker.tag}/")
    older_row = f"tr[data-build-uuid='{older.build_uuid}']"
    page.wait_for_selector(f"{older_row} .status--success")
    page.evaluate("window.loadedOnce = true")

    # Three seconds of running: long enough to see.
    site.build_command = "sh build.sh 30 1"
    site.save()
    newer = push(server, site, "Try a new layout", branch="feature/pricing")
    newer_row = f"tr[data-build-uuid='{newer.build_uuid}']"
    page.wait_for_selector(f"{newer_row} .status--running")
    page.wait_for_selector(f"{newer_row} .status--success")
    assert "Try a new layout" in page.locator(newer_row).inner_text()
    assert newer.commit_hash[:7] in page.locator(newer_row).inner_text()
    # Newest first, and the older build's row is still there, unchanged.
    uuids = page.eval_on_selector_all("tr[data-build-uuid]", "rows => rows.map((r) => r.dataset.buildUuid)")
    assert uuids == [str(newer.build_uuid), str(older.build_uuid)]
    assert page.locator(f"{older_row} .status--success").is_visible()
    assert page.evaluate("window.loadedOnce") is True
    assert Build.objects.get(pk=newer.pk).build_outcome == BuildOutcome.SUCCESS


def test_a_user_of_another_account_gets_404_and_a_refused_socket(login, server, outsider, other_account, site):
    site.build_command = "sh build.sh 20 1"
    site.save()
    build = push(server, site, "Add pricing page")
    wait_for_line(build, "step 1: compiling module-1.js")  # live, printing
    page = login(outsider)
    response = page.goto(build_page(server, build))
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
    wait_for(lambda: Build.objects.get(pk=build.pk).status == BuildStatus.STOPPED, message="the build to end")
