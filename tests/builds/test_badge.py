import pytest

from builds.models import BuildOutcome, BuildStatus
from tests.factories import make_build, make_trigger, make_worker


@pytest.fixture
def worker(account):
    return make_worker(account, "site", badge_enabled=True)


def badge(client, worker, branch="main"):
    return client.get(f"/badge/{worker.tag}.svg", {"branch": branch})


def test_the_badge_is_off_by_default_and_then_a_404(client, account):
    worker = make_worker(account, "quiet")
    make_build(make_trigger(worker), status=BuildStatus.STOPPED, build_outcome=BuildOutcome.SUCCESS)
    assert badge(client, worker).status_code == 404
    assert client.get("/badge/" + "0" * 32 + ".svg").status_code == 404


def test_the_badge_shows_the_latest_build_of_the_branch(client, worker):
    trigger = make_trigger(worker)
    make_build(trigger, branch="main", status=BuildStatus.STOPPED, build_outcome=BuildOutcome.FAIL)
    make_build(trigger, branch="dev", status=BuildStatus.STOPPED, build_outcome=BuildOutcome.SUCCESS)
    response = badge(client, worker)
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert "no-cache" in response["Cache-Control"]
    assert "build: failing" in response.content.decode()
    assert "build: passing" in badge(client, worker, "dev").content.decode()
    assert "build: no builds" in badge(client, worker, "nope").content.decode()
    make_build(trigger, branch="main", status=BuildStatus.RUNNING)
    assert "build: building" in badge(client, worker).content.decode()
