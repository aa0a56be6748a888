"""Webhook throughput: sustained accepted deliveries per second against a trivial
Django view served the same way. Target: at least 50% of the trivial view.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/buildsite_bench \\
    REDIS_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python -m bench.webhooks [--seconds 15] [--connections 8] [--rounds 3] [--same-branch]

It migrates the database, adds a throwaway account with one worker, a GitHub
connection and a trigger, and serves the app with daphne on 127.0.0.1 (settings
bench.settings: the app's settings plus /bench/trivial), pooling database
connections as the web process does in production (BUILDSITE_DB_POOL, default 10
here). Then, alternating for `--rounds` rounds, it keeps `--connections` keep-alive
connections busy for `--seconds` each: with signed GitHub push deliveries, and
with the same requests to the trivial view (first in every other round). Every
delivery has a new delivery id and commit and goes to a new branch, so each queues
one build; with
`--same-branch` all go to `main`, and as the scheduler's dispatch is not running
here every push also supersedes the build the previous one queued. Only 202
answers count as accepted deliveries; anything else is reported. The account and
everything it owns is deleted afterwards.
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the load generator talks to this machine only


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


async def read_response(reader: asyncio.StreamReader) -> int:
    """Reads one HTTP/1.1 response (Content-Length or chunked); returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return status


class Deliveries:
    """Signed GitHub push deliveries to one connection, each a new commit and id."""

    def __init__(self, connection_uuid: str, repo_id: int, secret: str, same_branch: bool) -> None:
        from tests.builds.payloads import github_commit, github_push

        sha = "f" * 40
        commit = github_commit(sha, "Update the landing page", modified=["src/index.js"])
        ref = "refs/heads/main" if same_branch else "refs/heads/bench/" + "b" * 12
        self.template = json.dumps(github_push(repo_id, ref=ref, after=sha, commits=[commit])).encode()
        self.path = f"/webhooks/{connection_uuid}"
        self.secret = secret
        self.count = 0

    def request(self, path: str | None = None) -> bytes:
        from tests.builds.payloads import github_signature

        self.count += 1
        body = self.template.replace(b"f" * 40, f"{self.count:040x}".encode())
        body = body.replace(b"b" * 12, f"{self.count:012d}".encode())
        headers = {
            "Host": f"{HOST}",
            "User-Agent": "GitHub-Hookshot/bench",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": github_signature(body, self.secret),
        }
        head = f"POST {path or self.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return head.encode() + b"\r\n" + body


async def drive(port: int, make_request, seconds: float, connections: int) -> tuple[int, Counter, float]:
    """Keeps `connections` connections busy until the deadline; returns the count of
    202 answers, all statuses, and the elapsed time."""
    statuses: Counter = Counter()
    start = time.monotonic()
    deadline = start + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.monotonic() < deadline:
                writer.write(make_request())
                statuses[await read_response(reader)] += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return statuses[202], statuses, time.monotonic() - start


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("daphne exited before it served a request")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit("daphne did not start listening")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--same-branch", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.connections <= 64:
        sys.exit("--connections must be between 1 and 64")

    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from builds.models import Build, Trigger, WebhookDelivery
    from tests.factories import make_account, make_connection, make_trigger, make_worker

    if not settings.IS_POSTGRES:
        sys.exit("Set DATABASE_URL to a PostgreSQL database: this benchmark measures PostgreSQL.")
    call_command("migrate", verbosity=0)
    account = make_account(f"bench-{uuid.uuid4().hex[:8]}")
    connection = make_connection(account, provider="github", secret="bench-secret")
    make_trigger(make_worker(account, "bench"), connection, production_branch="main")
    deliveries = Deliveries(str(connection.uuid), int(connection.repo_id), "bench-secret", args.same_branch)

    port = free_port()
    log = open(settings.DATA_DIR / "bench-daphne.log", "w")  # closed in the finally below
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", HOST, "-p", str(port), "buildsite.asgi:application"],
        cwd=ROOT,
        # As in production, the web process pools its database connections.
        env={"BUILDSITE_DB_POOL": "10", **os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(port, daphne)
        asyncio.run(drive(port, deliveries.request, 2, args.connections))  # warm up both paths
        asyncio.run(drive(port, lambda: deliveries.request("/bench/trivial"), 2, args.connections))
        results: dict[str, list[float]] = {"webhook": [], "trivial": []}
        # Daphne's own CPU per answer: what the ratio comes down to when daphne is the
        # bottleneck, and steadier than throughput on a machine with other load.
        cpu: dict[str, list[float]] = {"webhook": [], "trivial": []}
        for n in range(1, args.rounds + 1):
            paths = [("webhook", deliveries.request), ("trivial", lambda: deliveries.request("/bench/trivial"))]
            # Every other round the trivial view goes first: what a webhook round leaves
            # PostgreSQL to do afterwards (writing out, vacuuming) slows whichever round
            # follows it, and that must not always be the trivial view's.
            for name, make in paths if n % 2 else paths[::-1]:
                used = cpu_seconds(daphne.pid)
                accepted, statuses, elapsed = asyncio.run(drive(port, make, args.seconds, args.connections))
                cpu[name].append((cpu_seconds(daphne.pid) - used) / max(sum(statuses.values()), 1))
                results[name].append(accepted / elapsed)
                others = {code: count for code, count in statuses.items() if code != 202}
                note = f", other answers {others}" if others else ""
                print(
                    f"round {n} {name:8} {accepted / elapsed:8.1f}/s  ({accepted} accepted{note}; "
                    f"daphne CPU {cpu[name][-1] * 1000:.1f} ms each)"
                )
        webhook, trivial = statistics.mean(results["webhook"]), statistics.mean(results["trivial"])
        recorded = WebhookDelivery.objects.filter(repo_connection=connection, response_code=202).count()
        builds = Build.objects.filter(account=account).count()
        print(
            f"\nPostgreSQL, daphne (database pool {os.environ.get('BUILDSITE_DB_POOL', '10')}), "
            f"{args.connections} connections, {args.rounds} x {args.seconds:g} s each, "
            f"{'every push to main' if args.same_branch else 'every push to a new branch'}\n"
            f"  webhook deliveries accepted: {webhook:8.1f}/s\n"
            f"  trivial Django view:         {trivial:8.1f}/s\n"
            f"  ratio:                       {webhook / trivial:8.1%}   (target >= 50%)\n"
            f"  daphne CPU per answer:       {statistics.mean(cpu['webhook']) * 1000:8.1f} ms webhook, "
            f"{statistics.mean(cpu['trivial']) * 1000:.1f} ms trivial view"
        )
        print(f"  (all runs: {recorded} deliveries recorded as queued, {builds} builds)")
    finally:
        daphne.terminate()
        daphne.wait(timeout=30)
        log.close()
        Build.objects.filter(account=account).delete()
        Trigger.objects.filter(worker__account=account).delete()  # they protect their connection
        account.delete()


if __name__ == "__main__":
    main()
