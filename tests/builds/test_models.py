import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from builds.models import (
    Build,
    BuildOutcome,
    BuildStatus,
    EnvironmentVariable,
    RepoConnection,
    validate_branch_name,
    validate_clone_url,
)
from tests.builds.running import at_once
from tests.factories import make_build, make_connection, make_trigger, make_worker


@pytest.fixture
def trigger(account):
    return make_trigger(make_worker(account, "site"))


def test_a_build_moves_forward_and_is_stamped(trigger):
    build = make_build(trigger)
    assert build.status == BuildStatus.QUEUED and build.build_outcome is None
    assert build.transition(BuildStatus.INITIALIZING)
    assert build.initializing_on is not None and build.heartbeat_on is not None
    assert build.transition(BuildStatus.RUNNING, container_id="abc123")
    assert build.running_on >= build.initializing_on and build.container_id == "abc123"
    assert build.stop(BuildOutcome.FAIL, "Build command exited with code 2", exit_code=2)
    build.refresh_from_db()
    assert (build.status, build.build_outcome, build.exit_code) == (BuildStatus.STOPPED, BuildOutcome.FAIL, 2)
    assert build.reason == "Build command exited with code 2"
    assert build.stopped_on >= build.running_on


@pytest.mark.parametrize(
    "start, target",
    [
        (BuildStatus.QUEUED, BuildStatus.RUNNING),
        (BuildStatus.RUNNING, BuildStatus.INITIALIZING),
        (BuildStatus.STOPPED, BuildStatus.RUNNING),
        (BuildStatus.STOPPED, BuildStatus.INITIALIZING),
    ],
)
def test_illegal_transitions_are_refused(trigger, start, target):
    build = make_build(trigger, status=start)
    assert build.transition(target) is False
    build.refresh_from_db()
    assert build.status == start


def test_a_stopped_build_cannot_stop_again(trigger):
    build = make_build(trigger)
    assert build.stop(BuildOutcome.CANCELLED, "Cancelled by alice")
    assert not build.stop(BuildOutcome.SUCCESS)
    build.refresh_from_db()
    assert build.build_outcome == BuildOutcome.CANCELLED and build.reason == "Cancelled by alice"


def test_outcome_goes_with_stopping_only(trigger):
    build = make_build(trigger)
    with pytest.raises(ValueError):
        build.transition(BuildStatus.STOPPED)
    with pytest.raises(ValueError):
        build.transition(BuildStatus.INITIALIZING, outcome=BuildOutcome.SUCCESS)
    with pytest.raises(ValueError):
        build.transition(BuildStatus.QUEUED)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_racing_processes_never_both_move_a_build(account):
    trigger = make_trigger(make_worker(account, "race"))
    builds = [make_build(trigger) for _ in range(20)]
    for build in builds:
        # Each process holds its own copy of the build, read before the race.
        outcomes = [BuildOutcome.SUCCESS, BuildOutcome.CANCELLED]
        copies = [Build.objects.get(pk=build.pk) for _ in outcomes]
        racers = zip(copies, outcomes, strict=True)
        won = at_once(*[lambda mine=mine, o=o: mine.stop(o, f"{o} won") for mine, o in racers])
        results = list(zip(outcomes, won, strict=True))
        winners = [outcome for outcome, moved in results if moved]
        assert len(winners) == 1, results
        build.refresh_from_db()
        assert build.build_outcome == winners[0] and build.reason == f"{winners[0]} won"


def test_new_build_snapshots_the_trigger(account):
    worker = make_worker(account, "snap")
    trigger = make_trigger(worker, production_branch="main", build_timeout_seconds=90)
    plain = EnvironmentVariable(trigger=trigger, name="NODE_ENV")
    plain.set_value("production", is_secret=False)
    plain.save()
    secret = EnvironmentVariable(trigger=trigger, name="API_KEY")
    secret.set_value("hunter2", is_secret=True)
    secret.save()

    production = make_build(trigger, branch="main")
    preview = make_build(trigger, branch="feature/x")
    trigger.deploy_command = "changed later"
    trigger.save()

    production.refresh_from_db()
    assert production.is_production and production.deploy_command == "echo deploy"
    assert not preview.is_production and preview.deploy_command == "npx wrangler versions upload"
    assert production.timeout_seconds == 90 and production.account == account
    # Variables are read when a build starts, secrets and plain ones alike.
    assert production.environment_variables == {}
    assert trigger.variables() == ({"NODE_ENV": "production"}, {"API_KEY": "hunter2"})


def test_secret_variables_are_stored_encrypted(account):
    trigger = make_trigger(make_worker(account, "sec"))
    variable = EnvironmentVariable(trigger=trigger, name="API_KEY")
    variable.set_value("hunter2-very-secret", is_secret=True)
    variable.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT value, value_encrypted FROM builds_environmentvariable WHERE id = %s", [variable.pk])
        value, value_encrypted = cursor.fetchone()
    assert value == ""
    assert "hunter2" not in value_encrypted and value_encrypted
    assert EnvironmentVariable.objects.get(pk=variable.pk).plaintext() == "hunter2-very-secret"


def test_connection_secrets_are_stored_encrypted(account):
    connection_obj = make_connection(account, secret="")
    webhook_secret = connection_obj.rotate_webhook_secret()
    connection_obj.set_clone_credential("ghp_clonetoken")
    connection_obj.save()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT clone_credential_encrypted, webhook_secret_encrypted FROM builds_repoconnection WHERE id = %s",
            [connection_obj.pk],
        )
        row = " ".join(cursor.fetchone())
    assert "ghp_clonetoken" not in row and webhook_secret not in row
    fresh = RepoConnection.objects.get(pk=connection_obj.pk)
    assert fresh.clone_credential() == "ghp_clonetoken" and fresh.webhook_secret() == webhook_secret


@pytest.mark.parametrize(
    "branch, includes, excludes, expected",
    [
        ("main", ["*"], [], True),
        ("main", ["main"], [], True),
        ("feature/a", ["feature/*"], [], True),
        ("feature/a", ["*"], ["feature/*"], False),
        ("main", ["main"], ["main"], False),
        ("release", ["main"], [], False),
    ],
)
def test_branch_rules_excludes_win(account, branch, includes, expected, excludes):
    trigger = make_trigger(make_worker(account), branch_includes=includes, branch_excludes=excludes)
    assert trigger.builds_branch(branch) is expected


@pytest.mark.parametrize("name", ["main", "feature/login-form", "release-1.2", "v2@x", "Dependabot/npm_and_yarn/x"])
def test_it_accepts_branch_names_git_accepts(name):
    validate_branch_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-x",
        "--upload-pack=evil",
        "a..b",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[",
        "a\\b",
        "x.lock",
        "/x",
        "x/",
        "x.",
        ".x",
        "a//b",
        "a/.b",
        "@",
        "a@{1}",
        "a\x00b",
        "a\tb",
        "x" * 256,
    ],
)
def test_it_rejects_branch_names_git_rejects(name):
    with pytest.raises(ValidationError):
        validate_branch_name(name)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/site.git",
        "http://git.local/site",
        "ssh://git@github.com/acme/site",
        "git@github.com:acme/site",
    ],
)
def test_it_accepts_clone_urls_of_safe_transports(url, settings):
    settings.BUILDSITE_CLONE_PROTOCOLS = ["https", "http", "ssh"]
    validate_clone_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c id",
        "fd::17",
        "/srv/git/site",
        "ftp://x/y",
        "ssh://-oProxyCommand=id/x",
        "-u@host:x",
        "https://x/y z",
        "file:///srv/git/site",
    ],
)
def test_it_rejects_other_clone_urls(url, settings):
    settings.BUILDSITE_CLONE_PROTOCOLS = ["https", "http", "ssh"]
    with pytest.raises(ValidationError):
        validate_clone_url(url)
