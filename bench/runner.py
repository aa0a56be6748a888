"""Benchmark of the build path, one command:

    python bench/runner.py [--pushes 20] [--lines 100000]

with the environment of the installation to measure (DATABASE_URL, REDIS_URL, ...).
It migrates the database, starts a real `manage.py qcluster`, and measures:

1. Over --pushes pushes (one at a time, each a new commit): push -> `running` and
   push -> first stored log line, p50 and p95, next to the floor measured in the same
   run: `git clone` of the same repository + `docker run` of the same image printing
   one line. Target: p50 of push -> first line within floor + 300 ms.
2. A build printing --lines lines: lines lost (target 0) and its wall time (push ->
   stopped) against the same `docker run` alone (target <= 1.3x).

"Push" is the moment the webhook has verified a delivery and queues builds: the
builds are created and handed to the scheduler in one transaction, as the webhook
does. The time the webhook itself takes is not part of this figure."""

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildsite.settings")

IMAGE = os.environ.get("BENCH_IMAGE", "buildsite/test-busybox:latest")
FIRST_LINE = "hello from the build"
LATENCY_TARGET_MS = 300
WALL_TIME_TARGET = 1.3


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def lines_command(lines: int) -> str:
    # One write per line, as a program that flushes each line does: the worst case
    # for the log pump (one Docker frame per line).
    return f'for i in $(seq 1 {lines}); do echo "build output line $i"; done'


def floor_once(url: str, workdir: Path) -> tuple[float, float]:
    """(git clone, docker run until its line is read), in seconds."""
    target = workdir / f"clone-{time.monotonic_ns()}"
    started = time.monotonic()
    subprocess.run(["git", "clone", "--quiet", "--depth=1", "--branch=main", url, str(target)], check=True)
    cloned = time.monotonic()
    run = subprocess.Popen(["docker", "run", "--rm", IMAGE, "sh", "-c", f"echo '{FIRST_LINE}'"], stdout=subprocess.PIPE)
    assert run.stdout.readline().decode().strip() == FIRST_LINE
    first_line = time.monotonic()
    run.wait()
    return cloned - started, first_line - cloned


def docker_run_alone(command: str) -> tuple[float, int]:
    """Wall time of `docker run` of the command, with all of its output read; lines."""
    started = time.monotonic()
    run = subprocess.run(["docker", "run", "--rm", IMAGE, "sh", "-c", command], capture_output=True, check=True)
    return time.monotonic() - started, run.stdout.count(b"\n")


def timeline(build, pushed) -> str:
    """Push -> slot -> each phase -> stopped, from the timestamps the build recorded."""
    from django.utils.dateparse import parse_datetime

    marks = [("queued", pushed), ("slot taken", build.initializing_on)]
    for phase in build.phases:
        marks.append((f"{phase['name']} started", parse_datetime(phase["started_on"])))
        marks.append((f"{phase['name']} ended", parse_datetime(phase["stopped_on"])))
    marks.append(("stopped", build.stopped_on))
    return ", ".join(
        f"{name} +{(moment - previous).total_seconds() * 1000:.0f} ms"
        for (_, previous), (name, moment) in itertools.pairwise(marks)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="buildsite-bench-"))
    env = {
        **os.environ,
        "BUILDSITE_WORKSPACE_DIR": str(work / "workspaces"),
        "BUILDSITE_CLONE_PROTOCOLS": "file",
        "BUILDSITE_EXECUTOR": "docker",
        "BUILDSITE_Q_WORKERS": "2",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
    }
    os.environ.update(env)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    from accounts.models import Account
    from builds import logs, scheduler
    from builds.models import Build, RepoConnection, Trigger, Worker
    from tests.factories import commit_files, make_git_repo

    call_command("migrate", verbosity=0)
    url, _ = make_git_repo(work / "site.git", {"build.sh": f"echo '{FIRST_LINE}'\n"})
    account = Account.objects.create(name="Benchmark", concurrency_limit=2)
    connection = RepoConnection.objects.create(
        account=account,
        provider="github",
        provider_account_id="1",
        provider_account_name="bench",
        repo_id=str(time.time_ns()),
        repo_name="site",
        clone_url=url,
    )
    trigger = Trigger.objects.create(
        worker=Worker.objects.create(account=account, name="bench"),
        repo_connection=connection,
        trigger_name="bench",
        build_command="sh build.sh",
        deploy_command="true",
        build_image=IMAGE,
    )

    cluster_log = (work / "qcluster.log").open("wb")
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=BASE_DIR, env=env, stdout=cluster_log, stderr=subprocess.STDOUT
    )

    def push(commit: str) -> tuple[float, Build]:
        pushed = timezone.now()
        with transaction.atomic():
            build = trigger.new_build(branch="main", commit_hash=commit, source="push")
            scheduler.enqueue([build])
        return pushed, build

    def wait_stopped(build: Build) -> Build:
        while True:
            build.refresh_from_db()
            if build.status == "stopped":
                return build
            time.sleep(0.02)

    try:
        time.sleep(3)  # the cluster starting
        # Warm-up (the first build pays for imports and connections in the worker).
        wait_stopped(push(commit_files(work / "site.git", {"warm": "1"}))[1])

        to_running, to_first_line, floors, clones, runs = [], [], [], [], []
        for i in range(args.pushes):
            commit = commit_files(work / "site.git", {"change": str(i)})
            pushed, build = push(commit)
            build = wait_stopped(build)
            assert build.build_outcome == "success", build.reason
            first = next(logs.all_lines(build, "stdout"))
            assert first.text == FIRST_LINE
            to_running.append((build.running_on - pushed).total_seconds())
            to_first_line.append((first.timestamp - pushed).total_seconds())
            clone, run = floor_once(url, work)
            clones.append(clone)
            runs.append(run)
            floors.append(clone + run)

        # The build runs exactly what `docker run` alone runs: no deploy command.
        trigger.build_command = lines_command(args.lines)
        trigger.deploy_command = ""
        trigger.save()
        pushed, build = push(commit_files(work / "site.git", {"lines": "1"}))
        build = wait_stopped(build)
        wall = (build.stopped_on - pushed).total_seconds()
        breakdown = timeline(build, pushed)
        stored = [line.text for line in logs.all_lines(build, "stdout")]
        expected = [f"build output line {i}" for i in range(1, args.lines + 1)]
        lost = args.lines - len(stored)
        in_order = stored == expected
        alone, alone_lines = docker_run_alone(lines_command(args.lines))
    finally:
        cluster.terminate()
        cluster.wait(timeout=30)
        Build.objects.filter(account=account).delete()
        Trigger.objects.filter(worker__account=account).delete()
        account.delete()

    p50_floor = statistics.median(floors)
    target = p50_floor + LATENCY_TARGET_MS / 1000
    p50_first = statistics.median(to_first_line)
    print(f"Build path latency over {args.pushes} pushes (database {django.db.connection.vendor}, image {IMAGE})")
    print(f"  {'':32} {'p50':>8} {'p95':>8}")
    for name, values in (
        ("push -> running", to_running),
        ("push -> first stored log line", to_first_line),
        ("floor: git clone", clones),
        ("floor: docker run to its line", runs),
        ("floor: clone + docker run", floors),
    ):
        print(f"  {name:32} {ms(statistics.median(values)):>8} {ms(percentile(values, 95)):>8}")
    verdict = "met" if p50_first <= target else "NOT met"
    print(
        f"  target: p50 first line <= floor p50 + {LATENCY_TARGET_MS} ms = {ms(target)}: {verdict} "
        f"(floor + {ms(p50_first - p50_floor)})"
    )
    ratio = wall / alone
    print(f"Build printing {args.lines} lines")
    print(f"  lines lost: {lost} (stored {len(stored)}, in order: {in_order}; docker run alone printed {alone_lines})")
    print(f"  wall time push -> stopped: {wall:.2f} s; docker run alone: {alone:.2f} s; ratio {ratio:.2f}x")
    verdict = "met" if lost == 0 and ratio <= WALL_TIME_TARGET else "NOT met"
    print(f"  where the time went: {breakdown}")
    print(f"  target: 0 lost and <= {WALL_TIME_TARGET}x: {verdict}")


if __name__ == "__main__":
    main()
