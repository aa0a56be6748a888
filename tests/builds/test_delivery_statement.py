"""The one-statement write of a delivery and its builds (PostgreSQL) against the ORM
path SQLite takes, and the per-process copy of a connection and its triggers that
every delivery starts from."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from builds import delivery_statement, triggers
from builds.models import Build, BuildOutcome, BuildStatus, RepoConnection, Trigger, Worker
from tests.builds import payloads
from tests.builds.payloads import SHA_AFTER, deliver
from tests.factories import make_account, make_build, make_connection, make_trigger, make_worker

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the statement and the digest are PostgreSQL's"
)

# What differs between two deliveries of the same push to two identical set-ups:
# which rows, and when.
IDENTITY = {"id", "build_uuid", "created_on", "modified_on", "received_on", "delivery_id", "repo_connection_id"}
IDENTITY |= {"trigger_id", "worker_id", "account_id"}


@pytest.fixture(params=["statement", "orm"])
def path(request, monkeypatch) -> str:
    """Runs a test as PostgreSQL does, and down the ORM path that SQLite takes."""
    if request.param == "orm":
        monkeypatch.setattr(delivery_statement, "usable", lambda: False)
    return request.param


def push(client, connection, branch: str = "main", secret: str = "s3cret"):
    commits = [payloads.github_commit(SHA_AFTER, "Update the landing page", modified=["src/index.js"])]
    payload = payloads.github_push(int(connection.repo_id), ref=f"refs/heads/{branch}", commits=commits)
    return deliver(client, connection, payload, secret=secret)


def columns(instance) -> dict:
    return {
        f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields if f.attname not in IDENTITY
    }


def test_the_statement_writes_the_rows_the_orm_writes(db, client, monkeypatch):
    written = {}
    for path in ("statement", "orm"):
        account = make_account(f"acme-{path}")
        repo = make_connection(account, repo_id="4242", repo_name="site", clone_url="https://github.com/acme/site.git")
        make_trigger(make_worker(account, "site"), repo, trigger_name="Site", production_branch="main")
        make_trigger(make_worker(account, "docs"), repo, trigger_name="Docs", production_branch="live")
        with monkeypatch.context() as patched, CaptureQueriesContext(connection) as queries:
            if path == "orm":
                patched.setattr(delivery_statement, "usable", lambda: False)
            response = push(client, repo)
        assert response.status_code == 202
        # Each path is the one it claims to be: else both rows could come from the ORM.
        statements = [query for query in queries if query["sql"].startswith("WITH delivery AS (INSERT")]
        assert len(statements) == (1 if path == "statement" else 0)
        builds = Build.objects.filter(account=account).order_by("trigger__trigger_name")
        assert sorted(response.json()["builds"]) == sorted(str(build.build_uuid) for build in builds)
        assert {build.delivery.repo_connection_id for build in builds} == {repo.pk}
        written[path] = (columns(builds[0].delivery), [columns(build) for build in builds])
    assert written["statement"] == written["orm"]
    delivery, builds = written["statement"]
    assert (delivery["outcome"], delivery["response_code"]) == ("queued", 202)
    assert [(build["deploy_command"], build["is_production"]) for build in builds] == [
        ("npx wrangler versions upload", False),  # Docs: main is not its production branch
        ("echo deploy", True),
    ]


def test_a_newer_push_supersedes_whichever_path_writes_it(client, account, path):
    connection = make_connection(account)
    trigger = make_trigger(make_worker(account, "site"), connection)
    queued = make_build(trigger, branch="main")
    running = make_build(trigger, branch="main", status=BuildStatus.RUNNING)
    response = push(client, connection)
    assert response.status_code == 202
    queued.refresh_from_db()
    assert (queued.status, queued.build_outcome) == (BuildStatus.STOPPED, BuildOutcome.SKIPPED)
    assert queued.reason == f"Superseded by build {response.json()['builds'][0]} of a newer commit of main."
    running.refresh_from_db()
    assert running.status == BuildStatus.RUNNING


def test_a_redelivery_answers_with_the_original_builds_whichever_path_wrote_them(client, account, path):
    connection = make_connection(account)
    make_trigger(make_worker(account, "site"), connection)
    payload = payloads.github_push(int(connection.repo_id))
    first = deliver(client, connection, payload, delivery_id="d-1")
    again = deliver(client, connection, payload, delivery_id="d-1")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["builds"] == first.json()["builds"] and again.json()["redelivery"] is True
    assert Build.objects.count() == 1


# The copy of a connection and its triggers each process keeps: every change to them
# applies to the very next delivery.


@pytest.fixture
def site(account):
    connection = make_connection(account)
    make_trigger(make_worker(account, "site"), connection, trigger_name="Site", branch_includes=["main"])
    return connection


def test_the_next_delivery_reads_the_triggers_from_the_process_copy(client, site):
    assert push(client, site).status_code == 202
    kept = triggers.kept[site.uuid]
    with CaptureQueriesContext(connection) as queries:
        assert push(client, site).status_code == 202
    assert not [query for query in queries if query["sql"].startswith('SELECT "builds_trigger"')]
    assert triggers.kept[site.uuid] is kept


def test_a_rotated_secret_applies_to_the_next_delivery(client, site):
    assert push(client, site).status_code == 202
    new_secret = site.rotate_webhook_secret()
    site.save()
    assert push(client, site).status_code == 401
    assert push(client, site, secret=new_secret).status_code == 202


def test_changed_branch_rules_apply_to_the_next_delivery_even_when_saved_by_update(client, site):
    assert push(client, site, branch="feature").status_code == 200
    Trigger.objects.filter(repo_connection=site).update(branch_includes=["*"])
    assert push(client, site, branch="feature").status_code == 202


def test_added_and_deleted_triggers_apply_to_the_next_delivery(client, account, site):
    assert len(push(client, site).json()["builds"]) == 1
    docs = make_trigger(make_worker(account, "docs"), site, trigger_name="Docs")
    assert len(push(client, site).json()["builds"]) == 2
    docs.delete()
    assert len(push(client, site).json()["builds"]) == 1
    Trigger.objects.filter(repo_connection=site).delete()
    response = push(client, site)
    assert (response.status_code, response.json()["reason"]) == (200, "No trigger uses this repository connection.")


def test_a_renamed_worker_applies_to_the_next_delivery(client, site):
    assert push(client, site).status_code == 202
    Worker.objects.filter(triggers__repo_connection=site).update(name="renamed")
    assert "renamed" in push(client, site).json()["reason"]


def test_a_deleted_connection_is_404_for_the_next_delivery(client, site):
    assert push(client, site).status_code == 202
    Trigger.objects.filter(repo_connection=site).delete()
    RepoConnection.objects.filter(pk=site.pk).delete()
    assert push(client, site).status_code == 404
