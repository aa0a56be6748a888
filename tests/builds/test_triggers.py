import pytest

from builds import triggers
from builds.models import Build, BuildOutcome, BuildSource, BuildStatus, DeliveryOutcome, WebhookDelivery
from builds.webhooks import PushEvent
from tests.builds import payloads
from tests.builds.payloads import SHA_AFTER, SHA_BEFORE, deliver
from tests.factories import make_build, make_connection, make_trigger, make_worker


@pytest.fixture
def connection(account):
    return make_connection(account, provider="github")


def push(client, connection, branch: str = "main", message: str = "Update", files=("README.md",), **kwargs):
    commits = [payloads.github_commit(SHA_AFTER, message, modified=list(files))]
    payload = payloads.github_push(int(connection.repo_id), ref=f"refs/heads/{branch}", commits=commits, **kwargs)
    return deliver(client, connection, payload)


def recorded(connection) -> WebhookDelivery:
    return WebhookDelivery.objects.filter(repo_connection=connection).latest("received_on")


# Skip markers.


@pytest.mark.parametrize("marker", triggers.SKIP_MARKERS)
def test_a_skip_marker_in_the_head_commit_builds_nothing(client, account, connection, marker):
    make_trigger(make_worker(account, "site"), connection)
    response = push(client, connection, message=f"Fix typo\n\nSome detail {marker.swapcase()} here")
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "skipped" and body["builds"] == []
    assert body["reason"] == f"The head commit message contains {marker.swapcase()}: no build."
    assert not Build.objects.exists()
    delivery = recorded(connection)
    assert (delivery.outcome, delivery.reason) == (DeliveryOutcome.SKIPPED, body["reason"])


def test_a_skip_marker_in_an_older_commit_of_the_push_does_not_skip(client, account, connection):
    make_trigger(make_worker(account, "site"), connection)
    commits = [payloads.github_commit(SHA_BEFORE, "WIP [skip ci]"), payloads.github_commit(SHA_AFTER, "Done")]
    response = deliver(client, connection, payloads.github_push(int(connection.repo_id), commits=commits))
    assert response.status_code == 202
    assert Build.objects.get().commit_message == "Done"


def test_a_gitlab_merge_request_with_a_skip_marker_builds_nothing(client, account):
    connection = make_connection(account, provider="gitlab")
    make_trigger(make_worker(account, "lab"), connection)
    payload = payloads.gitlab_merge_request(int(connection.repo_id), message="Try this [ci skip]")
    response = deliver(client, connection, payload, event="Merge Request Hook")
    assert response.status_code == 200 and response.json()["outcome"] == "skipped"
    assert not Build.objects.exists()


# Branch rules.


@pytest.mark.parametrize(
    "includes, excludes, branch, builds",
    [
        (["*"], [], "main", True),
        (["*"], [], "feature/a", True),
        (["main"], [], "feature/a", False),
        (["release/*"], [], "release/2026-01", True),
        (["release/*"], [], "main", False),
        (["*"], ["dependabot/*"], "dependabot/npm/x", False),
        (["dependabot/*"], ["dependabot/*"], "dependabot/npm/x", False),  # excludes win
        (["*"], ["*-wip"], "login-wip", False),
        (["*"], ["*-wip"], "login", True),
    ],
)
def test_branch_rules_decide_which_pushes_build(client, account, connection, includes, excludes, branch, builds):
    trigger = make_trigger(make_worker(account, "site"), connection, branch_includes=includes, branch_excludes=excludes)
    response = push(client, connection, branch=branch)
    if builds:
        assert response.status_code == 202
        assert Build.objects.get().branch == branch
    else:
        assert response.status_code == 200
        assert response.json()["outcome"] == "ignored"
        assert response.json()["reason"] == f"No build: {trigger}: its branch rules exclude {branch}."
        assert not Build.objects.exists()
        assert recorded(connection).outcome == DeliveryOutcome.IGNORED


def test_production_and_preview_builds_run_their_own_commands(client, account, connection):
    make_trigger(
        make_worker(account, "site"),
        connection,
        production_branch="live",
        deploy_command="deploy --prod",
        non_production_deploy_command="deploy --preview",
    )
    assert push(client, connection, branch="live").status_code == 202
    assert push(client, connection, branch="main").status_code == 202
    live = Build.objects.get(branch="live")
    main = Build.objects.get(branch="main")
    assert (live.is_production, live.deploy_command) == (True, "deploy --prod")
    assert (main.is_production, main.deploy_command) == (False, "deploy --preview")


def test_each_matching_trigger_gets_a_build_and_the_rest_are_explained(client, account, connection):
    site = make_trigger(make_worker(account, "site"), connection, trigger_name="Site")
    docs = make_trigger(make_worker(account, "docs"), connection, trigger_name="Docs", path_includes=["docs/*"])
    api = make_trigger(make_worker(account, "api"), connection, trigger_name="Api", branch_includes=["release/*"])
    other = make_trigger(make_worker(account, "elsewhere"))  # another connection's trigger
    response = push(client, connection, files=["src/app.js"])
    assert response.status_code == 202
    (build,) = Build.objects.all()
    assert build.trigger == site and response.json()["builds"] == [str(build.build_uuid)]
    reason = response.json()["reason"]
    assert reason.startswith(f"Queued 1 build: {site}.")
    assert f"{docs}: no changed file matches its watch paths" in reason
    assert f"{api}: its branch rules exclude main" in reason
    assert str(other) not in reason


def test_a_connection_without_triggers_builds_nothing(client, connection):
    response = push(client, connection)
    assert response.status_code == 200
    assert response.json()["reason"] == "No trigger uses this repository connection."
    assert not Build.objects.exists()


# Watch paths, as Workers Builds documents them.


def event(files, commit_count: int = 1) -> PushEvent:
    return PushEvent(
        provider="github",
        source=BuildSource.PUSH,
        branch="main",
        commit_hash=SHA_AFTER,
        changed_files=tuple(files),
        commit_count=commit_count,
    )


@pytest.mark.parametrize(
    "includes, excludes, files, builds",
    [
        (["*"], [], ["anything/at/all.txt"], True),
        ([], [], ["README.md"], True),  # no includes means the default, everything
        (["docs/README.md"], [], ["docs/README.md"], True),
        (["docs/README.md"], [], ["docs/README.md.bak"], False),
        (["docs/*"], [], ["docs/guide/deep/page.md"], True),
        (["docs/*"], [], ["src/docs/page.md"], False),
        (["*.md"], [], ["src/notes/todo.md"], True),
        (["*.md"], [], ["src/app.js"], False),
        (["*docs*"], [], ["packages/docs-site/a.js"], True),
        (["src/*"], ["src/generated/*"], ["src/generated/api.ts"], False),
        (["src/*"], ["src/generated/*"], ["src/generated/api.ts", "src/app.ts"], True),
        (["*"], ["*.md"], ["README.md", "CHANGELOG.md"], False),
        (["*"], ["*.md"], ["README.md", "package.json"], True),
        (["docs/*"], ["docs/*"], ["docs/a.md"], False),  # excludes are applied first
        (["a*b"], [], ["a*b"], True),  # a * in the middle is a literal character
        (["a*b"], [], ["axxb"], False),
    ],
)
def test_watch_paths(account, includes, excludes, files, builds):
    trigger = make_trigger(make_worker(account, "site"), path_includes=includes, path_excludes=excludes)
    assert triggers.watches_change(trigger, event(files)) is builds


@pytest.mark.parametrize(
    "files, commit_count",
    [
        ([], 1),  # an empty push made to force a build
        ([f"other/{i}.txt" for i in range(3000)], 1),
        (["other/a.txt"], 20),
    ],
)
def test_watch_paths_are_bypassed_for_empty_and_huge_pushes(account, files, commit_count):
    trigger = make_trigger(make_worker(account, "site"), path_includes=["src/*"])
    assert triggers.watches_change(trigger, event(files, commit_count))
    assert not triggers.watches_change(trigger, event(files[:1] or ["other/a.txt"], 1))


def test_watch_paths_see_every_file_added_modified_or_removed_in_the_push(client, account, connection):
    make_trigger(make_worker(account, "site"), connection, path_includes=["src/*"])
    commits = [
        payloads.github_commit(SHA_BEFORE, "one", added=["docs/a.md"], modified=[]),
        payloads.github_commit(SHA_AFTER, "two", modified=["README.md"], removed=["src/old.js"]),
    ]
    response = deliver(client, connection, payloads.github_push(int(connection.repo_id), commits=commits))
    assert response.status_code == 202 and Build.objects.count() == 1


def test_a_push_outside_the_watch_paths_is_recorded_as_skipped(client, account, connection):
    trigger = make_trigger(make_worker(account, "site"), connection, path_includes=["src/*"])
    response = push(client, connection, files=["docs/a.md"])
    assert response.status_code == 200
    body = response.json()
    assert body["outcome"] == "skipped"
    assert body["reason"] == f"No build: {trigger}: no changed file matches its watch paths."
    assert not Build.objects.exists()
    assert (recorded(connection).outcome, recorded(connection).response_code) == (DeliveryOutcome.SKIPPED, 200)


def test_gitlab_pushes_of_20_commits_build_whatever_the_listed_files(client, account):
    connection = make_connection(account, provider="gitlab")
    make_trigger(make_worker(account, "lab"), connection, path_includes=["src/*"])
    # GitLab lists at most 20 commits; total_commits_count says how many there were.
    payload = payloads.gitlab_push(int(connection.repo_id), total_commits_count=20)
    assert deliver(client, connection, payload).status_code == 202
    assert Build.objects.count() == 1


# Superseding.


def test_a_newer_push_skips_older_queued_builds_of_the_same_trigger_and_branch(client, account, connection):
    trigger = make_trigger(make_worker(account, "site"), connection)
    other_trigger = make_trigger(make_worker(account, "other"), make_connection(account))
    queued = make_build(trigger, branch="main")
    running = make_build(trigger, branch="main", status=BuildStatus.RUNNING)
    other_branch = make_build(trigger, branch="feature")
    other_trigger_build = make_build(other_trigger, branch="main")

    response = push(client, connection, branch="main")
    assert response.status_code == 202
    new = Build.objects.get(build_uuid=response.json()["builds"][0])
    assert new.status == BuildStatus.QUEUED

    queued.refresh_from_db()
    assert (queued.status, queued.build_outcome) == (BuildStatus.STOPPED, BuildOutcome.SKIPPED)
    assert queued.reason == f"Superseded by build {new.build_uuid} of a newer commit of main."
    for untouched, status in [
        (running, BuildStatus.RUNNING),
        (other_branch, BuildStatus.QUEUED),
        (other_trigger_build, BuildStatus.QUEUED),
    ]:
        untouched.refresh_from_db()
        assert untouched.status == status and untouched.build_outcome is None
