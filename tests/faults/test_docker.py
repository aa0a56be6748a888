"""The Docker engine stopped during a build (as `systemctl stop docker` does) and
started again: that build ends terminated with a plain reason, the buddy finishes
cleanly, the container it could not remove is removed by the sweep once the engine is
back, and the next build succeeds in the same q2 cluster, which was not restarted."""

import pytest
from django_q.models import Task

from builds import executors
from builds.executors.docker import container_name
from builds.models import Build, BuildOutcome, BuildStatus
from tests.builds.running import output_of, system_lines, wait_for, wait_for_line
from tests.factories import commit_files
from tests.faults.conftest import site_env, site_trigger

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REASON = "Buildsite could not run this build: the Docker engine stopped answering while running the command"


def stopped(build_uuid: str) -> Build | None:
    return Build.objects.filter(build_uuid=build_uuid, status=BuildStatus.STOPPED).first()


def task_done(build_uuid: str) -> Task | None:
    return Task.objects.filter(name=f"build-{build_uuid}").first()


def test_a_build_whose_engine_stops_ends_with_a_reason_and_the_next_one_succeeds(
    private_dockerd, private_redis, make_site, test_database_url, tmp_path, settings, account
):
    connection, commit = site_trigger(account, tmp_path, "echo started; sleep 60\n")
    env = site_env(
        tmp_path,
        DATABASE_URL=test_database_url,
        REDIS_URL=private_redis.url,
        DOCKER_HOST=private_dockerd.host,
        BUILDSITE_Q_NAME="faults",
    )
    settings.BUILDSITE_WORKSPACE_DIR = env["BUILDSITE_WORKSPACE_DIR"]
    site = make_site(env)

    status, body = site.push(connection.uuid, int(connection.repo_id), commit)
    assert status == 202, body
    (build_uuid,) = body["builds"]
    wait_for_line(Build.objects.get(build_uuid=build_uuid), "started")
    private_dockerd.stop()

    build = wait_for(lambda: stopped(build_uuid), timeout=30, message="the build to stop")
    assert (build.build_outcome, build.reason) == (BuildOutcome.TERMINATED, REASON)
    assert output_of(build) == [("stdout", "started")]
    assert system_lines(build).endswith(REASON)
    # The buddy finished: its workspace is gone and its q2 task did not fail.
    wait_for(lambda: not executors.workspace_dir(build_uuid).exists(), message="the workspace to go")
    assert wait_for(lambda: task_done(build_uuid), message="the task's result").success

    private_dockerd.start()
    # The container the engine stopped and the buddy could not remove is the sweep's.
    assert container_name(build_uuid) in private_dockerd.containers()
    assert "'removed': 1" in site.manage("shell", "-c", "from builds import scheduler; print(scheduler.sweep())")
    assert private_dockerd.containers() == set()

    rebuilt = commit_files(tmp_path / "site.git", {"build.sh": "echo rebuilt\n"})
    status, body = site.push(connection.uuid, int(connection.repo_id), rebuilt)
    assert status == 202, body
    (next_uuid,) = body["builds"]
    after = wait_for(lambda: stopped(next_uuid), timeout=60, message="the next build to stop")
    assert (after.build_outcome, after.reason) == (BuildOutcome.SUCCESS, "")
    assert output_of(after) == [("stdout", "rebuilt"), ("stdout", "deployed")]
    wait_for(lambda: private_dockerd.containers() == set(), message="the next build's container to go")
