"""Plain helpers that make the objects tests need, with sensible defaults."""

import itertools
import uuid

from django.contrib.auth import get_user_model

from accounts.models import Account, Membership, Role
from builds import encryption
from builds.models import Build, BuildSource, RepoConnection, Trigger, Worker

_counter = itertools.count(1)


def make_user(username: str | None = None, password: str | None = None):
    """Without a password unless given: hashing one costs a second, and tests that
    need a session use client.force_login."""
    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(username, f"{username}@example.com", password)


def make_account(name: str = "Acme", *, owner=None, concurrency_limit: int | None = None) -> Account:
    extra = {"concurrency_limit": concurrency_limit} if concurrency_limit is not None else {}
    account = Account.objects.create(name=name, **extra)
    if owner is not None:
        add_member(owner, account, Role.OWNER)
    return account


def add_member(user, account: Account, role: str = Role.DEVELOPER) -> Membership:
    return Membership.objects.create(user=user, account=account, role=role)


def make_worker(account: Account, name: str | None = None, **fields) -> Worker:
    return Worker.objects.create(account=account, name=name or f"worker-{next(_counter)}", **fields)


def make_connection(account: Account, *, provider: str = "github", secret: str = "s3cret", **fields) -> RepoConnection:
    n = next(_counter)
    values = {
        "provider_account_id": "1001",
        "provider_account_name": "acme",
        "repo_id": str(5000 + n),
        "repo_name": f"site-{n}",
        "clone_url": f"https://github.com/acme/site-{n}.git",
        **fields,
    }
    connection = RepoConnection(account=account, provider=provider, **values)
    if secret:
        connection.webhook_secret_encrypted = encryption.encrypt(secret)
    connection.save()
    return connection


def make_trigger(worker: Worker, connection: RepoConnection | None = None, **fields) -> Trigger:
    connection = connection or make_connection(worker.account)
    values = {"trigger_name": "Deploy", "build_command": "echo build", "deploy_command": "echo deploy", **fields}
    return Trigger.objects.create(worker=worker, repo_connection=connection, **values)


def make_build(trigger: Trigger, *, branch: str = "main", source: str = BuildSource.PUSH, **fields) -> Build:
    build = trigger.new_build(
        branch=branch, commit_hash=fields.pop("commit_hash", uuid.uuid4().hex[:40]), source=source
    )
    if fields:
        Build.objects.filter(pk=build.pk).update(**fields)
        build.refresh_from_db()
    return build


def make_git_repo(path, files: dict[str, str], branch: str = "main") -> tuple[str, str]:
    """A bare repository at path holding one commit of `files` on `branch`; returns
    its file:// URL and the commit hash."""
    import subprocess
    from pathlib import Path

    path = Path(path)
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
    return f"file://{path}", commit_files(path, files, branch)


def commit_files(bare_repo, files: dict[str, str], branch: str = "main", message: str = "Update") -> str:
    """Push a commit of `files` (on top of the branch, if it exists) and return its hash."""
    import subprocess
    import tempfile
    from pathlib import Path

    env = {
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "PATH": "/usr/bin:/bin",
    }
    with tempfile.TemporaryDirectory() as work:

        def git(*args: str) -> str:
            return subprocess.run(
                ["git", "-C", work, *args], env=env, check=True, capture_output=True, text=True
            ).stdout.strip()

        git("init", "--quiet")
        if git("ls-remote", str(bare_repo), f"refs/heads/{branch}"):
            git("fetch", "--quiet", str(bare_repo), f"refs/heads/{branch}")
            git("checkout", "--quiet", "-B", branch, "FETCH_HEAD")
        else:
            git("checkout", "--quiet", "-B", branch)
        for name, content in files.items():
            file = Path(work) / name
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(content)
        git("add", "--all")
        git("commit", "--quiet", "--allow-empty", "-m", message)
        git("push", "--quiet", str(bare_repo), f"HEAD:refs/heads/{branch}")
        return git("rev-parse", "HEAD")
