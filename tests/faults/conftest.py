"""Private instances of the services the fault tests break, and Buildsite as it runs
in production (daphne + a q2 cluster) pointed at them.

The shared PostgreSQL, Redis and Docker engine serve other test runs on the same
machine, so they are never stopped: each fault test starts its own instance on a free
port, or a socket in a temporary directory, breaks that one, and always stops it and
removes its files. A binary that is missing skips the test, or fails it where
BUILDSITE_REQUIRE names the service."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import redis
from django.conf import settings

from tests.builds.payloads import github_commit, github_push, github_signature
from tests.builds.processes import Daphne, QCluster, database_url, free_port
from tests.builds.running import wait_for
from tests.conftest import REQUIRED, TEST_IMAGE
from tests.factories import make_connection, make_git_repo, make_trigger, make_worker

HOST = "127.0.0.1"  # private services listen on loopback only


def need(found: object, service: str, what: str) -> None:
    if not found:
        message = f"the fault tests of {service} need {what}"
        if service in REQUIRED:
            pytest.fail(f"{message} ({service} is required by BUILDSITE_REQUIRE)")
        pytest.skip(message)


def kill_leftovers(marker: str) -> None:
    """SIGKILL every process whose command line names `marker` (a private instance's
    own temporary directory): what an instance started that outlived it."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            # No persistence: a restart comes back empty, as a crashed cache would.
            [
                *("redis-server", "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"),
                *("--daemonize", "no", "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self.answers, timeout=15, message="the private Redis to start")

    def answers(self) -> bool:
        try:
            return redis.Redis(host=HOST, port=self.port, socket_connect_timeout=0.5).ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """Killed, as when it crashes."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class PrivatePostgres:
    """A cluster of its own (initdb) in a temporary directory, run as the postgres
    user when we are root (PostgreSQL refuses to run as root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.url = f"postgres://postgres@{HOST}:{self.port}/buildsite"
        self.root = Path(tempfile.mkdtemp(prefix="buildsite-faults-pg-"))
        self.as_owner = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.run("initdb", "-D", str(self.root / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def run(self, program: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bindir / program), *args], check=True, capture_output=True, timeout=60)

    def pg_ctl(self, *args: str) -> None:
        data, log = str(self.root / "data"), str(self.root / "postgres.log")
        self.run("pg_ctl", "-D", data, "-l", log, "-w", "-t", "30", *args)

    def start(self) -> None:
        # fsync off: this cluster's data is thrown away, and a restart is not a crash.
        options = f"-p {self.port} -k {self.root} -c listen_addresses={HOST} -c fsync=off -c full_page_writes=off"
        self.pg_ctl("-o", options, "start")

    def stop(self) -> None:
        """A fast shutdown, as a restart by the operator or the package manager does:
        every open connection is closed."""
        self.pg_ctl("-m", "fast", "stop")

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@{HOST}:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE buildsite")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.pg_ctl("-m", "immediate", "stop")
        kill_leftovers(str(self.root))
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateDockerd:
    """A Docker engine of its own: its own socket, data, state and cgroup parent, in a
    network namespace of its own (dockerd started with --bridge=none deletes the
    host's docker0, which the shared engine's containers need). Its containers have
    no network but loopback, which builds of the test image do not need."""

    def __init__(self) -> None:
        # Short: containerd's socket, deep under it, must fit in a socket path.
        self.root = Path(tempfile.mkdtemp(prefix="bs-dockerd-", dir="/tmp"))
        self.host = f"unix://{self.root}/docker.sock"
        self.process: subprocess.Popen | None = None
        (self.root / "daemon.json").write_text("{}")

    def start(self) -> None:
        argv = ["unshare", "--net", "--", "dockerd", "--config-file", str(self.root / "daemon.json")]
        argv += ["--host", self.host, "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec")]
        argv += ["--pidfile", str(self.root / "dockerd.pid"), "--bridge=none", "--iptables=false", "--ip-masq=false"]
        argv += ["--ip6tables=false", "--cgroup-parent=buildsite-faults", "--shutdown-timeout=5", "--log-level=warn"]
        with (self.root / "dockerd.log").open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.answers, timeout=60, message="the private dockerd to start")

    def answers(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"the private dockerd exited: {(self.root / 'dockerd.log').read_text()[-3000:]}")
        try:
            with contextlib.closing(docker.DockerClient(base_url=self.host, timeout=2)) as client:
                return client.ping()
        except docker.errors.DockerException:
            return False

    def containers(self) -> set[str]:
        """Names of the engine's containers, running or not."""
        with contextlib.closing(docker.DockerClient(base_url=self.host, timeout=30)) as client:
            # ignore_removed: one removed between the listing and its inspection is gone.
            return {container.name for container in client.containers.list(all=True, ignore_removed=True)}

    def import_test_image(self) -> None:
        script = Path(settings.BASE_DIR) / "scripts" / "make-test-images"
        subprocess.run([str(script)], env={**os.environ, "DOCKER_HOST": self.host}, check=True, timeout=120)

    def stop(self) -> None:
        """As `systemctl stop docker`: SIGTERM; dockerd stops its containers and exits."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        kill_leftovers(str(self.root))
        # Layers still mounted (an engine that had to be killed) go before their files.
        for mount in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            point = mount.split()[1]
            if point.startswith(str(self.root)):
                subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    need(shutil.which("redis-server"), "redis", "redis-server")
    instance = PrivateRedis(tmp_path)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    need(found, "postgres", "PostgreSQL's server binaries (/usr/lib/postgresql/*/bin)")
    if os.geteuid() == 0:
        need(shutil.which("runuser"), "postgres", "runuser, to run PostgreSQL as its own user")
    instance = PrivatePostgres(found[-1].parent)
    try:
        instance.start()
        instance.create_database()
        yield instance
    finally:
        instance.remove()


@pytest.fixture
def private_dockerd() -> Iterator[PrivateDockerd]:
    need(shutil.which("dockerd") and shutil.which("docker"), "docker", "dockerd and the docker CLI")
    need(shutil.which("unshare"), "docker", "unshare (util-linux)")
    need(os.geteuid() == 0, "docker", "root, to run a Docker engine")
    instance = PrivateDockerd()
    try:
        instance.start()
        instance.import_test_image()
        yield instance
    finally:
        instance.remove()


class Site:
    """Buildsite as production runs it, in two processes: daphne on a free port and a
    q2 cluster, both with `env`. Pushes arrive as signed GitHub deliveries; the API is
    read with a bearer token, as any client would."""

    def __init__(self, env: dict[str, str], workdir: Path, web_env: dict[str, str] | None = None) -> None:
        self.env = env
        self.web = Daphne({**env, **(web_env or {})}, workdir / "daphne.log")
        self.cluster = QCluster(env, workdir / "qcluster.log")
        self.base = self.web.url

    def start(self) -> "Site":
        self.web.start()
        self.cluster.start()
        return self

    def stop(self) -> None:
        self.web.stop()
        self.cluster.stop()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 10
    ):
        """(status, JSON body) of one request."""
        # Only ever our own daphne, over http on loopback.
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            content = e.read()
            try:
                return e.code, json.loads(content)
            except ValueError:
                return e.code, content.decode(errors="replace")

    def push(self, connection_uuid, repo_id: int, commit: str, secret: str = "s3cret") -> tuple[int, dict]:
        """A signed GitHub push of `commit` to main."""
        payload = github_push(repo_id, after=commit, commits=[github_commit(commit, "Update the site")])
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": f"faults-{time.time_ns()}",
            "X-Hub-Signature-256": github_signature(body, secret),
        }
        return self.request("POST", f"/webhooks/{connection_uuid}", body, headers, timeout=60)

    def api(self, token: str, account_id: str, path: str):
        return self.request(
            "GET", f"/client/v4/accounts/{account_id}/builds/{path}", headers={"Authorization": f"Bearer {token}"}
        )

    def manage(self, *args: str) -> str:
        return manage(self.env, *args)


def manage(env: dict[str, str], *args: str) -> str:
    """A one-off `manage.py` command with this environment; its stdout."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


def site_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment of a site under test: this run's environment (so its keys and
    data directory), with builds in the test image, quick heartbeats, and `overrides`."""
    return {
        **os.environ,
        "BUILDSITE_Q_WORKERS": "2",
        "BUILDSITE_EXECUTOR": "docker",
        "BUILDSITE_DEFAULT_IMAGE": TEST_IMAGE,
        "BUILDSITE_WORKSPACE_DIR": str(tmp_path / "workspaces"),
        "BUILDSITE_CLONE_PROTOCOLS": "file",
        "BUILDSITE_CONTAINER_MEMORY": "256m",
        "BUILDSITE_CONTAINER_CPUS": "1",
        "BUILDSITE_HEARTBEAT_SECONDS": "1",
        "BUILDSITE_LOG_FORMAT": "plain",
        # The readers here poll; the API's rate limit is not under test.
        "BUILDSITE_API_RATE": "100000/m",
        **overrides,
    }


def site_trigger(account, tmp_path: Path, script: str, deploy_command: str = "echo deployed"):
    """A trigger of a local repository whose build command runs `script`, in the test
    image; returns its connection and the repository's commit."""
    url, commit = make_git_repo(tmp_path / "site.git", {"build.sh": script})
    connection = make_connection(account, clone_url=url)
    worker = make_worker(account, "site")
    make_trigger(worker, connection, build_command="sh build.sh", deploy_command=deploy_command, build_image=TEST_IMAGE)
    return connection, commit


@pytest.fixture
def test_database_url() -> str:
    """The test database, for Buildsite's own processes to share with this one. Tests
    using it are marked django_db(transaction=True): then the database is set up before,
    and flushed after, the processes started by make_site."""
    from django.db import connection

    assert connection.vendor == "postgresql", "the processes under test share the test database: PostgreSQL only"
    return database_url()


@pytest.fixture
def make_site(tmp_path) -> Iterator:
    """make_site(env, web_env=None) starts a Site; every one is stopped at the end."""
    sites: list[Site] = []

    def make(env: dict[str, str], web_env: dict[str, str] | None = None) -> Site:
        site = Site(env, tmp_path, web_env)
        sites.append(site)
        return site.start()

    yield make
    for site in sites:
        site.stop()


class LogReader:
    """Follows a build's log through the API by cursor, as a websocket client that
    lost its connection resyncs: it keeps its cursor, so what it could not read is
    asked for again when it reconnects."""

    def __init__(self, site: Site, token: str, account_id: str, build_uuid: str) -> None:
        self.site = site
        self.token = token
        self.account_id = account_id
        self.build_uuid = build_uuid
        self.cursor = ""
        self.lines: list[str] = []
        self.failures: list = []

    def read(self) -> bool:
        """Every page there is now; False when the API could not be reached."""
        while True:
            try:
                status, body = self.site.api(
                    self.token, self.account_id, f"builds/{self.build_uuid}/logs?cursor={self.cursor}"
                )
            except OSError as e:
                self.failures.append(repr(e))
                return False
            if status != 200:
                self.failures.append((status, body))
                return False
            page = body["result"]
            if not page["lines"]:
                return True
            self.lines += [text for _, text in page["lines"]]
            self.cursor = page["cursor"]
