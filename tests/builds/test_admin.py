"""The Build admin: a live status column, the live log on the change page, and cancel
and retry actions for staff allowed to change builds."""

import pytest
from django.contrib.auth.models import Permission

from builds.models import Build, BuildOutcome, BuildStatus, WebhookDelivery
from tests.factories import make_build, make_connection, make_trigger, make_user, make_worker


@pytest.fixture
def superuser(db):
    user = make_user("root")
    user.is_staff = user.is_superuser = True
    user.save()
    return user


@pytest.fixture
def build(account):
    return make_build(make_trigger(make_worker(account, "site")))


def test_the_change_list_has_a_live_status_column(client, superuser, build):
    client.force_login(superuser)
    body = client.get("/admin/builds/build/").content.decode()
    assert f'data-live-build="{build.build_uuid}"' in body and 'data-status="queued"' in body
    assert "buildsite/admin-live.js" in body


def test_the_change_page_shows_the_live_log(client, superuser, build):
    client.force_login(superuser)
    body = client.get(f"/admin/builds/build/{build.pk}/change/").content.decode()
    assert f'data-log-socket="/ws/admin/builds/{build.build_uuid}/"' in body
    assert "buildsite/log.js" in body


def test_admin_actions_cancel_and_retry(client, superuser, build):
    client.force_login(superuser)
    response = client.post(
        "/admin/builds/build/", {"action": "cancel_builds", "_selected_action": [build.pk]}, follow=True
    )
    assert "1 build(s) cancelled" in response.content.decode()
    build.refresh_from_db()
    assert build.build_outcome == BuildOutcome.CANCELLED
    client.post("/admin/builds/build/", {"action": "retry_builds", "_selected_action": [build.pk]})
    retry = Build.objects.get(retry_of=build)
    assert retry.status == BuildStatus.QUEUED


def test_staff_without_the_change_permission_get_no_actions(client, build):
    viewer = make_user("vic")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_build"))
    client.force_login(viewer)
    body = client.get("/admin/builds/build/").content.decode()
    assert "cancel_builds" not in body
    client.post("/admin/builds/build/", {"action": "cancel_builds", "_selected_action": [build.pk]})
    build.refresh_from_db()
    assert build.status == BuildStatus.QUEUED


def test_webhook_deliveries_are_browsable(client, superuser, account):
    WebhookDelivery.objects.create(
        repo_connection=make_connection(account), provider="github", event="push", response_code=202, reason="ok"
    )
    client.force_login(superuser)
    response = client.get("/admin/builds/webhookdelivery/")
    assert response.status_code == 200 and "push" in response.content.decode()
