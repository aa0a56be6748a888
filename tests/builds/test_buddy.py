"""The Build Buddy end to end: a local bare git repository, a queued build, the
scheduler, and a real container (or a local process). Builds run through django-q2's
sync mode, so the task runs in the test's thread through q2's own worker function."""

import json
import logging
import socket
import time

import pytest

from builds import logs, tasks
from builds.models import Build, BuildOutcome, BuildStatus, EnvironmentVariable, LogChunk
from buildsite.structured_logging import JsonFormatter
from tests.builds.running import (
    docker_container_exists,
    in_thread,
    log_of,
    output_of,
    queue_build,
    run_queued,
    system_lines,
    wait_for,
    wait_for_line,
)
from tests.factories import (
    GitHttpServer,
    commit_files,
    make_connection,
    make_git_repo,
    make_trigger,
    make_worker,
)

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
    assert build.exit_code == 0
    # The plain variables it ran with are recorded on the build.
    assert build.environment_variables == {"GREETING": "hello"}
    lines = system_lines(build)
    assert "Build command: sh build.sh" in lines and "Build command finished in" in lines
    assert "Deploy command finished in" in lines and "Build succeeded in" in lines
    seqs = [line.seq for line in logs.all_lines(build)]
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


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_a_missing_branch_fails_with_gits_error(trigger, q_sync, build_settings):
    build = run_queued(queue_build(trigger, "no-such-branch"))

    assert build.build_outcome == BuildOutcome.FAIL
    assert build.reason == "Cloning the repository failed: fatal: couldn't find remote ref refs/heads/no-such-branch"
    assert ("stderr", "fatal: couldn't find remote ref refs/heads/no-such-branch") in log_of(build)
    assert build.running_on is None
    # The container, started while git ran, went with the workspace.
    assert not docker_container_exists(build)
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
    assert not LogChunk.objects.filter(text__contains="tok-5ecret-value").exists()
    # Secrets are never copied onto the build.
    assert "API_TOKEN" not in build.environment_variables


@pytest.mark.django_db(transaction=True)
def test_a_build_is_run_once_and_never_when_it_is_no_longer_waiting(trigger, q_sync, build_settings):
    build_settings.BUILDSITE_EXECUTOR = "local"
    build = run_queued(queue_build(trigger))
    assert build.build_outcome == BuildOutcome.SUCCESS
    lines = log_of(build)

    # q2 delivering the task a second time does nothing.
    assert tasks.run_build(str(build.build_uuid)) == "not run"
    assert log_of(build) == lines

    # A build cancelled while queued is never started.
    cancelled = queue_build(trigger)
    assert cancelled.cancel("Cancelled by alice")
    cancelled = run_queued(cancelled)
    assert (cancelled.build_outcome, cancelled.reason, cancelled.runner) == ("cancelled", "Cancelled by alice", "")
    assert cancelled.initializing_on is None and not cancelled.log_chunks.exists()


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_a_clone_credential_never_shows_in_argv_git_config_or_the_log(account, tmp_path, q_sync, build_settings):
    make_git_repo(tmp_path / "private.git", {"build.sh": "echo private build"})
    with GitHttpServer(tmp_path, "x-access-token", "ghp_t0ken-for-cloning") as server:
        connection = make_connection(account, clone_url=server.url("private.git"))
        connection.set_clone_credential("ghp_t0ken-for-cloning")
        connection.save()
        trigger = make_trigger(
            make_worker(account, "private"),
            connection,
            build_command="sh build.sh; cat .git/config",
            deploy_command="true",
        )
        build = run_queued(queue_build(trigger))

    assert build.build_outcome == BuildOutcome.SUCCESS, build.reason
    assert server.expected in server.authorizations
    assert not server.password_in_argv
    output = [text for _, text in output_of(build)]
    assert output[0] == "private build"
    config = "\n".join(output[1:]).lower()
    assert f"url = {server.url('private.git')}" in config
    # Masking would show *** if the credential were in .git/config; it is not there at all.
    assert "***" not in config and "extraheader" not in config and "ghp_" not in config
    basic = server.expected.split()[1]
    assert not LogChunk.objects.filter(text__contains="t0ken").exists()
    assert not LogChunk.objects.filter(text__contains=basic).exists()


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_a_rejected_credential_fails_the_clone_with_gits_error(account, tmp_path, q_sync, build_settings):
    make_git_repo(tmp_path / "private.git", {"build.sh": "echo private build"})
    with GitHttpServer(tmp_path, "x-access-token", "the-right-one") as server:
        connection = make_connection(account, clone_url=server.url("private.git"))
        connection.set_clone_credential("a-wrong-t0ken")
        connection.save()
        build = run_queued(queue_build(make_trigger(make_worker(account, "private"), connection)))

    assert build.build_outcome == BuildOutcome.FAIL
    # git's own words: the server refused the credential sent, and git may not prompt.
    assert build.reason == (
        f"Cloning the repository failed: fatal: could not read Username for '{server.url('')[:-1]}': "
        "terminal prompts disabled"
    )
    assert server.authorizations and server.expected not in server.authorizations
    assert not LogChunk.objects.filter(text__contains="wrong-t0ken").exists()
    assert "wrong-t0ken" not in build.reason


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("phase", ["build", "deploy"])
def test_cancelling_a_running_build_kills_its_container_within_seconds(trigger, q_sync, build_settings, phase):
    command = "echo started; sleep 30; echo never"
    trigger.build_command = command if phase == "build" else "echo built"
    trigger.deploy_command = command if phase == "deploy" else "echo deployed"
    trigger.save()
    build = queue_build(trigger)
    buddy = in_thread(run_queued, build)
    wait_for_line(build, "started")
    assert docker_container_exists(build)

    cancelled_at = time.monotonic()
    assert Build.objects.get(pk=build.pk).cancel("Cancelled by alice")
    buddy.join(timeout=5)
    assert not buddy.is_alive()
    assert time.monotonic() - cancelled_at < 5

    build.refresh_from_db()
    assert (build.status, build.build_outcome, build.reason) == ("stopped", "cancelled", "Cancelled by alice")
    assert build.phases[-1]["name"] == phase
    assert "never" not in [text for _, text in log_of(build)]
    assert "Build cancelled after" in system_lines(build)
    assert not docker_container_exists(build)
    assert not any(build_settings.BUILDSITE_WORKSPACE_DIR.iterdir())


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_build_while_it_clones_stops_git(account, build_settings, q_sync):
    # A server that takes connections and never answers: git waits until it is killed.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/site.git"
        trigger = make_trigger(make_worker(account, "slow"), make_connection(account, clone_url=url))
        build = queue_build(trigger)
        buddy = in_thread(run_queued, build)
        wait_for(lambda: Build.objects.get(pk=build.pk).phases, message="the clone to start")

        assert Build.objects.get(pk=build.pk).cancel("Cancelled by alice")
        buddy.join(timeout=5)
        assert not buddy.is_alive()

    build.refresh_from_db()
    assert (build.build_outcome, build.status, build.running_on) == ("cancelled", "stopped", None)
    assert [phase["name"] for phase in build.phases] == ["clone"]
    assert not any(build_settings.BUILDSITE_WORKSPACE_DIR.iterdir())


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_a_build_past_its_timeout_is_terminated(trigger, q_sync, build_settings):
    trigger.build_timeout_seconds = 3
    trigger.build_command = "echo started; sleep 30; echo never"
    trigger.save()
    started = time.monotonic()
    build = run_queued(queue_build(trigger))

    assert time.monotonic() - started < 8
    assert (build.build_outcome, build.reason, build.exit_code) == ("terminated", "Build was timed out", None)
    assert (build.stopped_on - build.initializing_on).total_seconds() < 5
    assert [text for _, text in output_of(build)] == ["started"]
    assert "Build terminated after" in system_lines(build)
    assert not docker_container_exists(build)


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_running_out_of_memory_has_its_own_reason(trigger, q_sync, build_settings):
    build_settings.BUILDSITE_CONTAINER_MEMORY = "32m"
    # tail keeps its whole input in memory when it cannot see its end.
    trigger.build_command = "head -c 200000000 /dev/zero | tail -c 100000000 > /dev/null"
    trigger.save()
    build = run_queued(queue_build(trigger))

    assert (build.build_outcome, build.reason) == ("fail", "Build ran out of memory (limit 32m)")
    assert build.exit_code == 137


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_hitting_the_process_limit_has_its_own_reason(trigger, q_sync, build_settings):
    build_settings.BUILDSITE_CONTAINER_PIDS = 12
    trigger.build_command = "for i in $(seq 30); do sleep 5 > /dev/null 2>&1 & done; wait"
    trigger.save()
    build = run_queued(queue_build(trigger))

    assert (build.build_outcome, build.reason) == ("fail", "Build hit the limit of 12 processes")
    assert build.exit_code != 0


@pytest.mark.django_db(transaction=True)
def test_a_secret_that_cannot_be_decrypted_ends_the_build_with_our_error(trigger, q_sync):
    secret = EnvironmentVariable(trigger=trigger, name="API_TOKEN")
    secret.set_value("tok-5ecret-value", is_secret=True)
    secret.save()
    # As after the encryption key was lost or rotated away.
    EnvironmentVariable.objects.filter(pk=secret.pk).update(value_encrypted="gAAAAA-not-a-fernet-token")
    build = run_queued(queue_build(trigger))

    assert (build.status, build.build_outcome) == (BuildStatus.STOPPED, BuildOutcome.TERMINATED)
    assert build.reason == "Buildsite could not run this build: its secrets could not be read"
    assert build.runner and build.running_on is None


class JsonLines(logging.Handler):
    """The JSON log lines written, each with the name of the thread that wrote it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter(release="test"))
        self.lines: list[tuple[str, dict]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.threadName, json.loads(self.format(record))))


@pytest.mark.django_db(transaction=True)
def test_log_lines_written_during_a_build_carry_its_uuid_and_account(trigger, q_sync, build_settings, settings):
    build_settings.BUILDSITE_EXECUTOR = "local"
    # A channel layer nobody answers: every event the build sends, from the buddy's
    # thread and from its log pump's, is logged as a warning by the process's
    # publisher thread, tagged with the build that sent it.
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1"]}}
    }
    captured = JsonLines()
    logger = logging.getLogger("builds")
    logger.addHandler(captured)
    try:
        build = run_queued(queue_build(trigger))
    finally:
        logger.removeHandler(captured)

    assert build.build_outcome == BuildOutcome.SUCCESS
    assert captured.lines
    # Dispatch, the buddy and its threads: every line names the account.
    assert {line["account_id"] for _, line in captured.lines} == {trigger.worker.account_id}
    during = [(thread, line) for thread, line in captured.lines if line.get("build_uuid") == str(build.build_uuid)]
    messages = [line["message"] for _, line in during]
    assert f"build {build.build_uuid} ended success: no reason" in messages
    assert f"channel layer send to build.{build.build_uuid} failed" in [
        line["message"] for thread, line in during if thread == "channel-layer-publisher"
    ]
    assert all(line["release"] == "test" for _, line in during)
