"""Redis (the site's broker, channel layer and cache) killed during a build: the build
completes, every line of its log is in the database, a reader following the log by
cursor keeps reading from the database meanwhile and, reconnecting once Redis is back,
has every line exactly once, in order; and the next push builds, with no restart.

The reader is the log API by cursor (GET builds/<uuid>/logs?cursor=), the resync a
websocket client makes when it reconnects: a websocket itself needs the channel
layer, which is Redis."""

import pytest
from django.utils import timezone

from accounts.models import ApiToken
from builds import logs
from builds.models import Build, BuildOutcome, BuildStatus
from tests.builds.running import log_of, wait_for
from tests.factories import commit_files
from tests.faults.conftest import LogReader, site_env, site_trigger

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

LINES = 40
SCRIPT = f'for i in $(seq 1 {LINES}); do echo "line $i"; sleep 0.1; done\n'


def stopped(build_uuid: str) -> Build | None:
    return Build.objects.filter(build_uuid=build_uuid, status=BuildStatus.STOPPED).first()


def test_a_build_outlives_redis_and_a_reader_that_reconnects_gets_every_line(
    private_redis, make_site, test_database_url, tmp_path, owner, account
):
    connection, commit = site_trigger(account, tmp_path, SCRIPT)
    _, token = ApiToken.issue(owner, account, "faults")
    env = site_env(tmp_path, DATABASE_URL=test_database_url, REDIS_URL=private_redis.url, BUILDSITE_Q_NAME="faults")
    site = make_site(env)

    status, body = site.push(connection.uuid, int(connection.repo_id), commit)
    assert status == 202, body
    (build_uuid,) = body["builds"]
    reader = LogReader(site, token, account.id, build_uuid)
    wait_for(lambda: reader.read() and "line 5" in reader.lines, timeout=30, message="line 5 read through the API")

    private_redis.stop()
    redis_down = timezone.now()
    assert Build.objects.get(build_uuid=build_uuid).status == BuildStatus.RUNNING
    seen = len(reader.lines)
    wait_for(lambda: reader.read() and len(reader.lines) > seen, timeout=10, message="lines read without Redis")

    build = wait_for(lambda: stopped(build_uuid), timeout=30, message="the build to stop")
    assert (build.build_outcome, build.reason) == (BuildOutcome.SUCCESS, "")
    # Most of the build ran without Redis, and its lines were stored all the same.
    assert sum(line.timestamp > redis_down for line in logs.all_lines(build)) > LINES // 2
    stored = log_of(build)
    expected = [f"line {i}" for i in range(1, LINES + 1)]
    assert [text for stream, text in stored if stream == "stdout"] == [*expected, "deployed"]
    seqs = [line.seq for line in logs.all_lines(build)]
    assert seqs == list(range(1, len(stored) + 1))

    private_redis.start()
    wait_for(reader.read, timeout=20, message="the reader to reconnect")
    assert reader.lines == [text for _, text in stored]
    assert reader.failures == []

    status, body = site.push(connection.uuid, int(connection.repo_id), commit_files(tmp_path / "site.git", {"b": "2"}))
    assert status == 202, body
    (next_uuid,) = body["builds"]
    # q2's pusher, which lost its Redis connection, is restarted by the cluster itself.
    after = wait_for(lambda: stopped(next_uuid), timeout=60, message="the next build to stop")
    assert (after.build_outcome, after.reason) == (BuildOutcome.SUCCESS, "")
