"""The Build Buddy end to end: a local bare git repository, a queued build, the
scheduler, and a real container (or a local process). Builds run through django-q2's
sync mode, so the task runs in the test's thread through q2's own worker function."""

import threading
import time

import docker
import pytest
from django.db import connections

from builds import scheduler, tasks
from builds.executors.docker import container_name
from builds.models import Build, BuildOutcome, BuildStatus, EnvironmentVariable, LogLine
from tests.factories import commit_files, make_connection, make_git_repo, make_trigger, make_worker

SCRIPT = """\
echo "building $WORKERS_CI_BRANCH at $WORKERS_CI_COMMIT_SHA (CI=$CI, WORKERS_CI=$WORKERS_CI)"
sleep 0.2
echo "a warning" >&2
sleep 0.2
echo "uuid $WORKERS_CI_BUILD_UUID greeting $GREETING"
"""

# The local executor runs the same builds where it applies: no image, no limits.
EXECUTORS = [pytest.param("docker", marks=pytest.mark.docker), "local"]


@pytest.fixture
def repo(tmp_path):
    url, commit = make_git_repo(tmp_path / "site.git", {"build.sh": SCRIPT, "site/index.html": "hello"})
    return url, commit, tmp_path / "site.git"


@pytest.fixture
def trigger(account, repo, build_settings):
    url, _, _ = repo
    connection = make_connection(account, clone_url=url)
    trigger = make_trigger(
        make_worker(account, "site"),
        connection,
        build_command="sh build.sh",
        deploy_command="echo deploying to production",
        non_production_deploy_command="echo uploading a preview",
    )
    variable = EnvironmentVariable(trigger=trigger, name="GREETING")
    variable.set_value("hello", is_secret=False)
    variable.save()
    return trigger


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


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_queued_build_runs_and_succeeds_with_its_output_in_order(trigger, repo, q_sync, build_settings, executor):
    build_settings.BUILDSITE_EXECUTOR = executor
    _, commit, _ = repo
    build = run_queued(queue_build(trigger, "main", commit_hash=""))

    assert (build.status, build.build_outcome, build.reason) == (BuildStatus.STOPPED, BuildOutcome.SUCCESS, "")
    # An empty commit means the branch tip; the buddy records what it built.
    assert build.commit_hash == commit
    assert build.initializing_on <= build.running_on <= build.stopped_on
    assert output_of(build) == [
        ("stdout", f"building main at {commit} (CI=true, WORKERS_CI=1)"),
        ("stderr", "a warning"),
        ("stdout", f"uuid {build.build_uuid} greeting hello"),
        ("stdout", "deploying to production"),
    ]
    assert [phase["name"] for phase in build.phases] == ["clone", "build", "deploy"]
    assert [phase["exit_code"] for phase in build.phases] == [None, 0, 0]
    lines = system_lines(build)
    assert "Build command: sh build.sh" in lines and "Build command finished in" in lines
    assert "Deploy command finished in" in lines and "Build succeeded in" in lines
    seqs = list(LogLine.objects.filter(build=build).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))



@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_a_preview_branch_runs_the_preview_command(trigger, repo, q_sync):
    _, _, bare = repo
    commit = commit_files(bare, {"build.sh": "echo feature build"}, branch="feature/x")
    build = run_queued(queue_build(trigger, "feature/x", commit_hash=commit))

    assert build.build_outcome == BuildOutcome.SUCCESS and not build.is_production
    assert output_of(build) == [("stdout", "feature build"), ("stdout", "uploading a preview")]
    assert build.commit_hash == commit


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_failing_command_ends_the_build_with_its_exit_code(trigger, q_sync, build_settings, executor):
    build_settings.BUILDSITE_EXECUTOR = executor
    # Order across stdout and stderr is only defined for writes apart in time.
    trigger.build_command = "echo compiling; sleep 0.2; echo 'error: it broke' >&2; exit 3"
    trigger.save()
    build = run_queued(queue_build(trigger))

    assert (build.status, build.build_outcome) == (BuildStatus.STOPPED, BuildOutcome.FAIL)
    assert (build.reason, build.exit_code) == ("Build command exited with code 3", 3)
    assert output_of(build) == [("stdout", "compiling"), ("stderr", "error: it broke")]
    # The first failing phase ends the build: no deploy.
    assert [phase["name"] for phase in build.phases] == ["clone", "build"]
    assert "Build failed after" in system_lines(build)


@pytest.mark.django_db(transaction=True)
def test_a_missing_branch_fails_with_gits_error(trigger, q_sync, build_settings):
    build = run_queued(queue_build(trigger, "no-such-branch"))

    assert build.build_outcome == BuildOutcome.FAIL
    assert build.reason == "Cloning the repository failed: fatal: couldn't find remote ref refs/heads/no-such-branch"
    assert ("stderr", "fatal: couldn't find remote ref refs/heads/no-such-branch") in log_of(build)
    assert build.running_on is None
    assert not any(build_settings.BUILDSITE_WORKSPACE_DIR.iterdir())


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_the_build_runs_in_its_root_directory(trigger, q_sync):
    trigger.root_directory = "/site"
    trigger.build_command = "pwd; cat index.html"
    trigger.save()
    build = run_queued(queue_build(trigger))
    assert build.build_outcome == BuildOutcome.SUCCESS
    assert output_of(build)[:2] == [("stdout", "/opt/buildhome/repo/site"), ("stdout", "hello")]

    trigger.root_directory = "missing"
    trigger.save()
    build = run_queued(queue_build(trigger))
    assert build.build_outcome == BuildOutcome.FAIL
    assert build.reason == "The root directory missing is not a directory of the repository"


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_a_secret_echoed_by_the_build_is_stored_only_as_stars(trigger, q_sync):
    secret = EnvironmentVariable(trigger=trigger, name="API_TOKEN")
    secret.set_value("tok-5ecret-value", is_secret=True)
    secret.save()
    trigger.build_command = 'echo "token=$API_TOKEN"; echo "$API_TOKEN" >&2; printf "%s\\n" "$API_TOKEN" | rev'
    trigger.save()
    build = run_queued(queue_build(trigger))

    assert build.build_outcome == BuildOutcome.SUCCESS
    assert sorted(output_of(build)[:3]) == [("stderr", "***"), ("stdout", "eulav-terce5-kot"), ("stdout", "token=***")]
    assert not LogLine.objects.filter(text__contains="tok-5ecret-value").exists()
    # Secrets are never copied onto the build.
    assert "API_TOKEN" not in build.environment_variables


@pytest.mark.django_db(transaction=True)
def test_a_build_is_run_once_and_never_when_it_is_no_longer_waiting(trigger, q_sync, build_settings):
    build_settings.BUILDSITE_EXECUTOR = "local"
    build = run_queued(queue_build(trigger))
    assert build.build_outcome == BuildOutcome.SUCCESS
    lines = LogLine.objects.filter(build=build).count()

    # q2 delivering the task a second time does nothing.
    assert tasks.run_build(str(build.build_uuid)) == "not run"
    assert LogLine.objects.filter(build=build).count() == lines

    # A build cancelled while queued is never started.
    cancelled = queue_build(trigger)
    assert cancelled.cancel("Cancelled by alice")
    cancelled = run_queued(cancelled)
    assert (cancelled.build_outcome, cancelled.reason, cancelled.runner) == ("cancelled", "Cancelled by alice", "")
    assert cancelled.initializing_on is None and not cancelled.log_lines.exists()
