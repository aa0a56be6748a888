"""PostgreSQL restarted between builds, and down for a while: daphne (with its
connection pool, as production runs it) and the q2 cluster are left running and
serve the next pushes and their builds; meanwhile /healthz answers, /readyz says
the database is down, and a webhook delivery or a deploy hook is refused with a
reason (503)."""

import json

import pytest

from tests.builds.running import wait_for
from tests.conftest import TEST_IMAGE
from tests.factories import commit_files, make_git_repo
from tests.faults.conftest import manage, site_env

pytestmark = [pytest.mark.faults, pytest.mark.docker]

# Run by `manage.py shell` against the private database: the site's account, a
# trigger of the local repository, and an API token.
SETUP = """
import json
from accounts.models import ApiToken
from builds.models import DeployHook
from tests.factories import make_account, make_connection, make_trigger, make_user, make_worker
user = make_user("alice")
account = make_account("Acme", owner=user)
connection = make_connection(account, clone_url={url!r})
worker = make_worker(account, "site")
trigger = make_trigger(worker, connection, build_command="sh build.sh", deploy_command="", build_image={image!r})
hook = DeployHook.objects.create(worker=worker, trigger=trigger, name="cms", branch="main")
_, token = ApiToken.issue(user, account, "faults")
print(json.dumps({{"account": account.id, "token": token, "connection": str(connection.uuid),
                  "repo_id": int(connection.repo_id), "hook": hook.hook_id}}))
"""


def test_the_site_recovers_from_database_restarts_without_being_restarted(
    private_postgres, private_redis, make_site, tmp_path
):
    repo = tmp_path / "site.git"
    url, commit = make_git_repo(repo, {"build.sh": "echo first\n"})
    env = site_env(tmp_path, DATABASE_URL=private_postgres.url, REDIS_URL=private_redis.url, BUILDSITE_Q_NAME="faults")
    manage(env, "migrate", "--noinput", "-v", "0")
    world = json.loads(manage(env, "shell", "--no-imports", "-c", SETUP.format(url=url, image=TEST_IMAGE)))
    # Daphne with a connection pool, as the README says to run it in production.
    site = make_site(env, web_env={"BUILDSITE_DB_POOL": "4"})

    def build(commit: str) -> tuple[dict, list[str]]:
        """Push `commit`; the build, once stopped, and its output."""
        status, body = site.push(world["connection"], world["repo_id"], commit)
        assert status == 202, body
        path = f"builds/{body['builds'][0]}"

        def stopped() -> dict | None:
            status, body = site.api(world["token"], world["account"], path)
            assert status == 200, body
            return body["result"] if body["result"]["status"] == "stopped" else None

        result = wait_for(stopped, timeout=30, message="the build to stop")
        status, body = site.api(world["token"], world["account"], f"{path}/logs")
        assert status == 200, body
        return result, [text for _, text in body["result"]["lines"]]

    first, output = build(commit)
    assert (first["build_outcome"], first["reason"]) == ("success", "")
    assert "first" in output

    # A restart between builds: every connection daphne's pool and the cluster's
    # processes hold is closed under them, and the next push uses them at once.
    private_postgres.stop()
    private_postgres.start()
    second, output = build(commit_files(repo, {"build.sh": "echo second\n"}))
    assert (second["build_outcome"], second["reason"]) == ("success", "")
    assert "second" in output

    # Down for a while: the process is alive, and not ready.
    private_postgres.stop()
    assert site.request("GET", "/healthz") == (200, {"status": "ok"})
    status, body = site.request("GET", "/readyz")
    assert status == 503 and body["checks"]["database"]["status"] == "down", body
    # A push or a deploy hook meanwhile is refused in JSON, saying why and to try again
    # later, not with a 500 page.
    status, body = site.push(world["connection"], world["repo_id"], commit)
    assert status == 503, body
    assert body["outcome"] == "rejected" and "redeliver it later" in body["reason"].lower(), body
    status, body = site.request("POST", f"/client/v4/workers/builds/deploy_hooks/{world['hook']}")
    assert status == 503, body
    assert body["errors"][0]["message"] == "Buildsite cannot reach its database right now.", body
    private_postgres.start()
    wait_for(lambda: site.request("GET", "/readyz")[0] == 200, timeout=30, message="the site to be ready again")
    third, output = build(commit_files(repo, {"build.sh": "echo third\n"}))
    assert (third["build_outcome"], third["reason"]) == ("success", "")
    assert "third" in output
