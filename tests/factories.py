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
    subprocess.run(["git", "init", "--quiet", "--bare", f"--initial-branch={branch}", str(path)], check=True)
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


class GitHttpServer:
    """A git server speaking git's smart HTTP protocol (git http-backend, run as CGI)
    on 127.0.0.1, serving the bare repositories under `root` to requests with the
    right Basic credentials. It records every Authorization header it receives, and
    whether, while it served a request (so while git was running), any process on
    this machine had the password on its command line."""

    def __init__(self, root, username: str, password: str) -> None:
        import base64
        import threading
        from http.server import ThreadingHTTPServer

        self.root = root
        self.expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.password = password
        self.authorizations: list[str | None] = []
        self.password_in_argv = False
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, repo: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{repo}"

    def __enter__(self) -> "GitHttpServer":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _argv_has_password(self) -> bool:
        from pathlib import Path

        for proc in Path("/proc").iterdir():
            try:
                if self.password.encode() in (proc / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
        return False

    def _handler(self):
        import subprocess
        from http.server import BaseHTTPRequestHandler
        from urllib.parse import urlsplit

        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.serve()

            def do_POST(self) -> None:
                self.serve()

            def serve(self) -> None:
                server.password_in_argv |= server._argv_has_password()
                authorization = self.headers.get("Authorization")
                server.authorizations.append(authorization)
                if authorization != server.expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                assert "chunked" not in self.headers.get("Transfer-Encoding", "")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path, _, query = self.path.partition("?")
                env = {
                    "PATH": "/usr/bin:/bin",
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": urlsplit(path).path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                    "REMOTE_USER": "git",
                }
                out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                headers = [line.split(":", 1) for line in head.decode().split("\r\n") if ":" in line]
                status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
                self.send_response(status)
                for key, value in headers:
                    if key.lower() != "status":
                        self.send_header(key, value.strip())
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
