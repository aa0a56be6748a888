"""Buildsite side by side with Buildbot: push -> the build's first command, one command:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/buildsite_bench \\
    REDIS_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python -m bench.buildbot [--pushes 20]

It installs Buildbot from PyPI into its own virtualenv (var/bench/buildbot-venv, kept
for the next run), then runs three systems on 127.0.0.1, all given the same local
bare repository, the same build script and the same pushes:

- Buildbot: a master (SQLite, its default) with the GitHub change hook (a secret,
  strict), a SingleBranchScheduler with treeStableTimer=None, a builder with a Git
  step (Buildbot's default incremental mode: it keeps its checkout) and a shell step
  running the script, and a worker on this machine;
- Buildsite, docker executor: daphne (with a database pool, as in production) and a
  q2 cluster against DATABASE_URL and REDIS_URL, builds in the test busybox image;
- Buildsite, local executor: the same, with the commands run as local processes
  (inside bubblewrap), so the container's share of the time is visible.

Each push is a new commit; its GitHub push payload, signed with both of GitHub's
headers (X-Hub-Signature, which Buildbot checks, and X-Hub-Signature-256, which
Buildsite checks), is POSTed to each system in turn, each build awaited before the
next push, the order rotated every round. The build script's first command is

    echo "first command at $EPOCHREALTIME"

run by busybox's sh in all three (the test image has busybox only, and busybox ash
has EPOCHREALTIME: the shell reads the clock, no process is started). The figure is
that printed time minus the time just before the POST, read back from each system's
own log of the build (Buildbot's REST API, Buildsite's stored log lines). One warm-up
push per system is not counted. Afterwards every process is stopped, the temporary
directory and the benchmark's accounts removed."""

import argparse
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildsite.settings")

from bench.runner import ms, percentile  # noqa: E402
from bench.webhooks import HOST, free_port  # noqa: E402

BUILDBOT_VERSION = "4.3.0"
BUILDBOT_PACKAGES = [f"buildbot=={BUILDBOT_VERSION}", f"buildbot-worker=={BUILDBOT_VERSION}"]
# The master refuses to start its web server (where the change hook lives) without it.
BUILDBOT_PACKAGES.append(f"buildbot-www=={BUILDBOT_VERSION}")
VENV = ROOT / "var" / "bench" / "buildbot-venv"
IMAGE = os.environ.get("BENCH_IMAGE", "buildsite/test-busybox:latest")
SECRET = "bench-secret"
MARK = "first command at "
SCRIPT = f'echo "{MARK}$EPOCHREALTIME"\necho "building the site"\n'
COMMAND = "busybox sh build.sh"
REPO_ID = 424242
TARGET_RATIO = 0.5
BUILD_TIMEOUT = 120

MASTER_CFG = """\
from buildbot.plugins import schedulers, steps, util, worker

c = BuildmasterConfig = {{}}
c["workers"] = [worker.Worker("bench", "bench-password")]
c["protocols"] = {{"pb": {{"port": "tcp:{pb_port}:interface=127.0.0.1"}}}}
c["change_source"] = []
c["schedulers"] = [
    schedulers.SingleBranchScheduler(
        name="push", change_filter=util.ChangeFilter(branch="main"), treeStableTimer=None, builderNames=["site"]
    )
]
factory = util.BuildFactory()
factory.addStep(steps.Git(repourl={repo_url!r}, mode="incremental"))
factory.addStep(steps.ShellCommand(name="build", command={command!r}))
c["builders"] = [util.BuilderConfig(name="site", workernames=["bench"], factory=factory)]
c["www"] = {{
    "port": "tcp:{www_port}:interface=127.0.0.1",
    "change_hook_dialects": {{"github": {{"secret": {secret!r}, "strict": True}}}},
}}
c["db"] = {{"db_url": "sqlite:///state.sqlite"}}
c["buildbotNetUsageData"] = None
c["title"] = "Buildsite benchmark"
c["buildbotURL"] = "http://127.0.0.1:{www_port}/"
"""


def until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    sys.exit(f"timed out after {timeout:g} s waiting for {what}")


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_json(url: str):
    status, body = http("GET", url)
    return json.loads(body) if status == 200 else None


def answers(url: str) -> bool:
    try:
        return http("GET", url)[0] == 200
    except OSError:
        return False


def ensure_buildbot() -> str:
    """The Buildbot virtualenv, made and filled from PyPI unless it exists already."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import buildbot, buildbot_worker, buildbot_www; print(buildbot.version)"]
    if python.exists():
        found = subprocess.run(check, capture_output=True, text=True)
        if found.stdout.strip() == BUILDBOT_VERSION:
            return BUILDBOT_VERSION
    print(f"Installing Buildbot {BUILDBOT_VERSION} into {VENV} ...", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *BUILDBOT_PACKAGES], check=True)
    return subprocess.run(check, capture_output=True, text=True, check=True).stdout.strip()


class Processes:
    """The benchmark's background processes, each in its own session; all stopped at
    the end (SIGTERM, then SIGKILL to what is left of the session)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        with (self.logs / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def push_request(commit: str) -> tuple[bytes, dict[str, str]]:
    """A GitHub push of `commit` to main, signed as GitHub signs it (both headers)."""
    from tests.builds.payloads import github_commit, github_push

    payload = github_push(REPO_ID, after=commit, commits=[github_commit(commit, "Update", modified=["build.sh"])])
    body = json.dumps(payload).encode()
    return body, {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature": "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }


def first_command_time(lines: list[str], system: str) -> float:
    for line in lines:
        if line.startswith(MARK):
            return float(line[len(MARK) :])
    sys.exit(f"{system}: the build's log has no line starting {MARK!r}")


class Buildbot:
    name = f"Buildbot {BUILDBOT_VERSION}, host worker"

    def __init__(self, work: Path, processes: Processes, repo_url: str) -> None:
        bin_dir = VENV / "bin"
        self.www_port, pb_port = free_port(), free_port()
        self.base = f"http://{HOST}:{self.www_port}"
        master, worker = work / "buildbot-master", work / "buildbot-worker"
        subprocess.run([str(bin_dir / "buildbot"), "create-master", "-r", str(master)], check=True, capture_output=True)
        (master / "master.cfg").write_text(
            MASTER_CFG.format(
                pb_port=pb_port,
                www_port=self.www_port,
                repo_url=repo_url,
                command=COMMAND.split(),
                secret=SECRET,
            )
        )
        create_worker = [str(bin_dir / "buildbot-worker"), "create-worker", "-r", str(worker), f"{HOST}:{pb_port}"]
        subprocess.run([*create_worker, "bench", "bench-password"], check=True, capture_output=True)
        twistd = [str(bin_dir / "twistd"), "--nodaemon", "--no_save", "-y", "buildbot.tac"]
        processes.start("buildbot-master", twistd, master, dict(os.environ))
        until(lambda: answers(f"{self.base}/api/v2/workers"), 60, "the Buildbot master to answer")
        processes.start("buildbot-worker", twistd, worker, dict(os.environ))
        until(self.worker_connected, 60, "the Buildbot worker to connect")

    def worker_connected(self) -> bool:
        workers = http_json(f"{self.base}/api/v2/workers")["workers"]
        return bool(workers and workers[0]["connected_to"])

    def last_build_id(self) -> int:
        builds = http_json(f"{self.base}/api/v2/builds?order=-buildid&limit=1")["builds"]
        return builds[0]["buildid"] if builds else 0

    def push(self, body: bytes, headers: dict[str, str]) -> float:
        """POSTs the push; returns push -> first command, in seconds."""
        before = self.last_build_id()
        pushed = time.time()
        status, answer = http("POST", f"{self.base}/change_hook/github", body, headers)
        if status != 200:
            sys.exit(f"Buildbot refused the push: {status} {answer[:300]!r}")

        def finished() -> dict | None:
            builds = http_json(f"{self.base}/api/v2/builds?order=-buildid&limit=1")["builds"]
            return builds[0] if builds and builds[0]["buildid"] > before and builds[0]["complete"] else None

        build = until(finished, BUILD_TIMEOUT, "the Buildbot build")
        if build["results"] != 0:
            sys.exit(f"The Buildbot build failed: {build['state_string']}")
        steps = http_json(f"{self.base}/api/v2/builds/{build['buildid']}/steps")["steps"]
        step = next(s for s in steps if s["name"] == "build")
        log = http_json(f"{self.base}/api/v2/steps/{step['stepid']}/logs")["logs"][0]
        raw = http("GET", f"{self.base}/api/v2/logs/{log['logid']}/raw")[1].decode()
        return first_command_time(raw.splitlines(), self.name) - pushed


class Buildsite:
    """daphne + a q2 cluster with the executor given, for an account of their own."""

    def __init__(self, executor: str, repo_url: str) -> None:
        from tests.factories import make_account, make_connection, make_trigger, make_worker

        self.executor = executor
        self.name = f"Buildsite, {executor} executor"
        self.account = make_account(f"bench-buildbot-{executor}-{uuid.uuid4().hex[:6]}")
        # The same repository id for every system: the pushes are byte for byte the same.
        self.connection = make_connection(self.account, secret=SECRET, clone_url=repo_url, repo_id=str(REPO_ID))
        worker = make_worker(self.account, "site")
        make_trigger(worker, self.connection, build_command=COMMAND, deploy_command="", build_image=IMAGE)
        self.base = ""

    def start(self, work: Path, processes: Processes) -> None:
        executor = self.executor
        port = free_port()
        self.base = f"http://{HOST}:{port}"
        env = {
            **os.environ,
            "BUILDSITE_EXECUTOR": executor,
            # Its own queue, so each cluster runs only its own daphne's builds.
            "BUILDSITE_Q_NAME": f"bench-buildbot-{executor}",
            "BUILDSITE_Q_WORKERS": "2",
            "BUILDSITE_WORKSPACE_DIR": str(work / f"workspaces-{executor}"),
            "BUILDSITE_CLONE_PROTOCOLS": "file",
        }
        daphne = [sys.executable, "-m", "daphne", "-b", HOST, "-p", str(port), "buildsite.asgi:application"]
        processes.start(f"daphne-{executor}", daphne, ROOT, {**env, "BUILDSITE_DB_POOL": "10"})
        processes.start(f"qcluster-{executor}", [sys.executable, "manage.py", "qcluster"], ROOT, env)
        until(lambda: answers(f"{self.base}/healthz"), 60, "daphne")
        until(lambda: b"running." in (processes.logs / f"qcluster-{executor}.log").read_bytes(), 60, "the q2 cluster")

    def push(self, body: bytes, headers: dict[str, str]) -> float:
        from builds import logs
        from builds.models import Build

        pushed = time.time()
        status, answer = http("POST", f"{self.base}/webhooks/{self.connection.uuid}", body, headers)
        if status != 202:
            sys.exit(f"{self.name} refused the push: {status} {answer[:300]!r}")
        (build_uuid,) = json.loads(answer)["builds"]
        build = until(
            lambda: Build.objects.filter(build_uuid=build_uuid, status="stopped").first(), BUILD_TIMEOUT, self.name
        )
        if build.build_outcome != "success":
            sys.exit(f"The {self.name} build did not succeed: {build.reason}")
        lines = [line.text for line in logs.all_lines(build, "stdout")]
        return first_command_time(lines, self.name) - pushed

    def delete(self) -> None:
        from builds.models import Build, Trigger

        Build.objects.filter(account=self.account).delete()
        Trigger.objects.filter(worker__account=self.account).delete()  # they protect their connection
        self.account.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=20)
    args = parser.parse_args()
    if not 1 <= args.pushes <= 200:
        sys.exit("--pushes must be between 1 and 200")
    version = ensure_buildbot()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from tests.factories import commit_files, make_git_repo

    if not (settings.IS_POSTGRES and settings.REDIS_URL):
        sys.exit("Set DATABASE_URL (PostgreSQL) and REDIS_URL: Buildsite is measured as it runs in production.")
    call_command("migrate", verbosity=0)
    work = Path(tempfile.mkdtemp(prefix="buildsite-vs-buildbot-"))
    repo = work / "site.git"
    repo_url, commit = make_git_repo(repo, {"build.sh": SCRIPT})
    processes = Processes(work)
    sites: list[Buildsite] = []
    try:
        buildbot = Buildbot(work, processes, repo_url)
        for executor in ("docker", "local"):
            sites.append(Buildsite(executor, repo_url))
            sites[-1].start(work, processes)
        systems = [buildbot, *sites]
        results: dict[str, list[float]] = {system.name: [] for system in systems}
        for system in systems:  # warm-up, not counted
            system.push(*push_request(commit))
        for n in range(args.pushes):
            commit = commit_files(repo, {"build.sh": SCRIPT, "round": str(n)}, message=f"Round {n}")
            body, headers = push_request(commit)
            turn = n % len(systems)
            for system in systems[turn:] + systems[:turn]:
                results[system.name].append(system.push(body, {**headers, "X-GitHub-Delivery": str(uuid.uuid4())}))
    finally:
        processes.stop_all()
        for site in sites:
            site.delete()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nPush -> the build's first command, {args.pushes} pushes each (Buildbot {version}; Buildsite on "
        f"PostgreSQL and Redis, image {IMAGE}; one warm-up push each not counted)"
    )
    print(f"  {'':34} {'p50':>8} {'p95':>8}")
    for name, values in results.items():
        print(f"  {name:34} {ms(statistics.median(values)):>8} {ms(percentile(values, 95)):>8}")
    bot, docker, local = (statistics.median(values) for values in results.values())
    ratio = docker / bot
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"  ratio of p50s, Buildsite (docker) / Buildbot: {ratio:.2f} (target <= {TARGET_RATIO:.2f}: {verdict})")
    print(f"  ratio of p50s, Buildsite (local) / Buildbot:  {local / bot:.2f}")
    print(f"  the container's share of Buildsite's p50 (docker - local): {ms(docker - local)}")


if __name__ == "__main__":
    main()
