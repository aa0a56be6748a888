"""Dashboard pages for workers and builds: what a member sees, what their role lets them
do, and that another account's objects are 404s."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from builds import logs
from builds.models import Build, BuildOutcome, BuildSource, BuildStatus
from tests.factories import add_member, make_build, make_connection, make_trigger, make_user, make_worker


@pytest.fixture
def worker(account):
    return make_worker(account, "site")


@pytest.fixture
def trigger(worker):
    return make_trigger(worker, make_connection(worker.account, clone_url="https://github.com/acme/site.git"))


@pytest.fixture
def build(trigger):
    return make_build(trigger, commit_hash="a" * 40, commit_message="Fix the header\n\nLong body", author="dana")


def url(account, *parts) -> str:
    return "/".join(["", "accounts", account.id, *map(str, parts), ""])


def test_anonymous_users_are_sent_to_login(client, account):
    response = client.get(url(account))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_workers_page_lists_each_worker_with_its_latest_build(client, member, account, trigger):
    make_build(trigger, branch="old", created_on=timezone.now() - timedelta(hours=1))
    latest = make_build(trigger, branch="feature-x", status=BuildStatus.RUNNING)
    make_worker(account, "idle")
    client.force_login(member)
    response = client.get(url(account))
    assert response.status_code == 200
    body = response.content.decode()
    assert "site" in body and "idle" in body and "no builds" in body
    assert f"/builds/{latest.build_uuid}/" in body and "feature-x" in body
    assert "old" not in body
    assert f'data-live-account="/ws/accounts/{account.id}/?since=' in body


def test_another_accounts_pages_are_404(client, member, account, other_account, outsider):
    foreign_worker = make_worker(other_account, "theirs")
    foreign_build = make_build(make_trigger(foreign_worker))
    client.force_login(member)
    assert client.get(url(other_account)).status_code == 404
    assert client.get(url(other_account, "workers", foreign_worker.tag)).status_code == 404
    # The object of another account, addressed through one's own account, is not found either.
    assert client.get(url(account, "workers", foreign_worker.tag)).status_code == 404
    assert client.get(url(account, "builds", foreign_build.build_uuid)).status_code == 404
    assert client.get(url(account, "builds", foreign_build.build_uuid) + "log.txt").status_code == 404
    assert client.post(url(account, "builds", foreign_build.build_uuid, "cancel")).status_code == 404
    foreign_build.refresh_from_db()
    assert foreign_build.status == BuildStatus.QUEUED


def test_worker_page_shows_history_with_commit_links(client, member, account, worker, build):
    gitlab = make_trigger(
        worker, make_connection(account, provider="gitlab", clone_url="git@gitlab.example.com:acme/site.git")
    )
    gitlab_build = make_build(gitlab, commit_hash="b" * 40)
    client.force_login(member)
    body = client.get(url(account, "workers", worker.tag)).content.decode()
    assert f'href="https://github.com/acme/site/commit/{"a" * 40}"' in body
    assert f'href="https://gitlab.example.com/acme/site/-/commit/{"b" * 40}"' in body
    assert "aaaaaaa" in body and "Fix the header" in body and "Long body" not in body
    assert "dana" in body and "Push" in body
    assert f'data-build-uuid="{gitlab_build.build_uuid}"' in body


def test_worker_page_filters_by_branch_and_outcome(client, member, account, worker, trigger):
    good = make_build(trigger, branch="main", status=BuildStatus.STOPPED, build_outcome=BuildOutcome.SUCCESS)
    bad = make_build(trigger, branch="main", status=BuildStatus.STOPPED, build_outcome=BuildOutcome.FAIL)
    other = make_build(trigger, branch="dev")
    client.force_login(member)
    body = client.get(url(account, "workers", worker.tag), {"branch": "main", "outcome": "fail"}).content.decode()
    assert str(bad.build_uuid) in body
    assert str(good.build_uuid) not in body and str(other.build_uuid) not in body
    body = client.get(url(account, "workers", worker.tag), {"outcome": "in_progress"}).content.decode()
    assert str(other.build_uuid) in body and str(good.build_uuid) not in body


def test_worker_page_paginates(client, member, account, worker, trigger):
    now = timezone.now()
    builds = [make_build(trigger, created_on=now - timedelta(minutes=i)) for i in range(30)]
    client.force_login(member)
    first = client.get(url(account, "workers", worker.tag)).content.decode()
    second = client.get(url(account, "workers", worker.tag), {"page": 2}).content.decode()
    assert "Page 1 of 2" in first and str(builds[0].build_uuid) in first and str(builds[29].build_uuid) not in first
    assert str(builds[29].build_uuid) in second and str(builds[0].build_uuid) not in second
    assert 'data-live-inserts="1"' in first and 'data-live-inserts=""' in second


def test_trigger_a_build_queues_a_manual_build_of_the_branch_tip(client, member, account, worker, trigger):
    client.force_login(member)
    response = client.post(
        url(account, "workers", worker.tag, "builds", "new"),
        {"trigger": trigger.pk, "branch": "release", "commit_hash": ""},
    )
    build = Build.objects.get()
    assert response.status_code == 302 and response["Location"] == url(account, "builds", build.build_uuid)
    assert (build.source, build.branch, build.commit_hash, build.status) == (
        BuildSource.MANUAL,
        "release",
        "",
        BuildStatus.QUEUED,
    )


def test_trigger_a_build_rejects_a_bad_commit_and_creates_nothing(client, member, account, worker, trigger):
    client.force_login(member)
    response = client.post(
        url(account, "workers", worker.tag, "builds", "new"),
        {"trigger": trigger.pk, "branch": "main", "commit_hash": "not-a-sha"},
        follow=True,
    )
    assert response.status_code == 200
    assert "A commit is 7 to 64 hexadecimal characters." in response.content.decode()
    assert not Build.objects.exists()


def test_read_only_members_see_no_build_buttons_and_cannot_use_them(client, account, worker, trigger, build):
    viewer = make_user("viola")
    add_member(viewer, account, Role.READ_ONLY)
    client.force_login(viewer)
    body = client.get(url(account, "builds", build.build_uuid)).content.decode()
    assert 'data-action="cancel"' not in body
    assert "Trigger a build" not in client.get(url(account, "workers", worker.tag)).content.decode()
    assert client.post(url(account, "builds", build.build_uuid, "cancel")).status_code == 403
    response = client.post(url(account, "workers", worker.tag, "builds", "new"), {"trigger": trigger.pk, "branch": "x"})
    assert response.status_code == 403
    build.refresh_from_db()
    assert build.status == BuildStatus.QUEUED and Build.objects.count() == 1


def test_build_page_shows_metadata_phases_and_the_live_log(client, member, account, build):
    start = timezone.now() - timedelta(seconds=90)
    phases = [
        {"name": "clone", "started_on": start.isoformat(), "stopped_on": (start + timedelta(seconds=3)).isoformat()},
        {"name": "build", "started_on": (start + timedelta(seconds=3)).isoformat(), "stopped_on": None},
    ]
    Build.objects.filter(pk=build.pk).update(status=BuildStatus.RUNNING, running_on=start, phases=phases)
    client.force_login(member)
    body = client.get(url(account, "builds", build.build_uuid)).content.decode()
    assert "Fix the header" in body and "dana" in body and "echo build" in body
    assert 'class="phase phase--success"' in body and ">3s<" in body
    assert 'class="phase phase--running"' in body and 'class="phase phase--pending"' in body
    assert f'data-log-socket="/ws/accounts/{account.id}/builds/{build.build_uuid}/"' in body
    assert f'href="{url(account, "builds", build.build_uuid)}log.txt"' in body
    assert 'data-action="cancel"' in body and 'data-action="retry"' not in body


def test_the_raw_log_downloads_every_line(client, member, account, build):
    logs.append(build, [("stdout", f"\x1b[32mline {i}\x1b[0m") for i in range(2500)])
    client.force_login(member)
    response = client.get(url(account, "builds", build.build_uuid) + "log.txt")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="build-{build.build_uuid}.log"'
    text = b"".join(response.streaming_content).decode()
    assert text.splitlines() == [f"\x1b[32mline {i}\x1b[0m" for i in range(2500)]


def test_cancel_stops_the_build_as_cancelled(client, member, account, build):
    client.force_login(member)
    response = client.post(url(account, "builds", build.build_uuid, "cancel"), follow=True)
    assert response.status_code == 200 and "Build cancelled." in response.content.decode()
    build.refresh_from_db()
    assert (build.status, build.build_outcome) == (BuildStatus.STOPPED, BuildOutcome.CANCELLED)
    assert build.reason == "Cancelled by bob."
    # The page now offers a retry instead.
    assert 'data-action="retry"' in response.content.decode()


def test_retry_queues_a_new_build_of_the_same_commit(client, member, account, build):
    build.stop(BuildOutcome.FAIL, "exit 1")
    client.force_login(member)
    response = client.post(url(account, "builds", build.build_uuid, "retry"))
    retry = Build.objects.exclude(pk=build.pk).get()
    assert response["Location"] == url(account, "builds", retry.build_uuid)
    assert (retry.retry_of, retry.commit_hash, retry.source, retry.status) == (
        build,
        build.commit_hash,
        BuildSource.MANUAL,
        BuildStatus.QUEUED,
    )


def test_fragments_render_one_row_or_summary(client, member, account, worker, build):
    client.force_login(member)
    row = client.get(url(account, "builds", build.build_uuid, "row")).content.decode()
    assert row.strip().startswith("<tr") and str(build.build_uuid) in row
    worker_row = client.get(url(account, "workers", worker.tag, "row")).content.decode()
    assert f'data-worker-tag="{worker.tag}"' in worker_row and "queued" in worker_row
    summary = client.get(url(account, "builds", build.build_uuid, "summary")).content.decode()
    assert summary.strip().startswith('<div id="build-summary"') and 'data-status="queued"' in summary
