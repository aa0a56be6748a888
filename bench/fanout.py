"""Fan-out benchmark: N websocket clients watch one build that prints M lines.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/fanout.py [--clients 200] [--lines 10000]

Starts daphne (the real ASGI app, Redis channel layer) on a free port, connects the
clients (logged-in sessions) to the build's websocket from a separate process, then
stores the lines through builds.logs.append in batches, as the Build Buddy does.
Prints, and exits non-zero unless every client got every line exactly once:
  - lines missing / duplicated per client (must be 0),
  - lag from storage (the line's timestamp) to a client receiving it: p50 / p95 / p99 / max,
  - daphne's resident memory: before the clients, peak, and after they left.
It creates its own account in the configured database and deletes it afterwards.
To look inside daphne: BENCH_DAPHNE_LOG=FILE keeps its log, and
BENCH_DAPHNE_PREFIX="-m cProfile -o FILE" profiles it."""

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildsite.settings")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.1)


# --- a minimal websocket client (RFC 6455, no extensions): the clients only read ---


async def ws_connect(port: int, path: str, cookie: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    status = await reader.readline()
    if b" 101 " not in status:
        raise ConnectionError(f"handshake refused: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer


async def ws_messages(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    parts: list[bytes] = []
    while True:
        head = await reader.readexactly(2)
        fin, opcode, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(length)
        if opcode == 0x8:
            return
        if opcode == 0x9:  # ping: answer with a masked pong
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            writer.write(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)
            continue
        if opcode in (0x0, 0x1, 0x2):
            parts.append(payload)
            if fin:
                yield b"".join(parts)
                parts = []


async def watch(port: int, path: str, cookie: str, total: int, ready: asyncio.Event, deadline: float) -> dict:
    # Like the dashboard's socket, a refused or dropped handshake is tried again later.
    retries = 0
    while True:
        try:
            reader, writer = await ws_connect(port, path, cookie)
            break
        except (OSError, ConnectionError) as e:
            retries += 1
            if retries > 5:
                ready.set()
                return {"error": repr(e), "seqs": [], "lags": [], "retries": retries}
            await asyncio.sleep(0.5 * 2**retries)
    seqs: list[int] = []
    lags: list[float] = []
    try:
        async for raw in ws_messages(reader, writer):
            now = time.time()
            message = json.loads(raw)
            if message["type"] == "status":
                ready.set()
            elif message["type"] == "logs":
                lines = message["lines"]
                first, last = lines[0]["seq"], lines[-1]["seq"]
                if last - first + 1 == len(lines):
                    seqs.extend(range(first, last + 1))
                else:
                    seqs.extend(line["seq"] for line in lines)
                # One append stamps all its lines alike: one lag per stamp, weighted.
                if lines[0]["ts"] == lines[-1]["ts"]:
                    lags.append((now - lines[0]["ts"], len(lines)))
                else:
                    lags.extend((now - line["ts"], 1) for line in lines)
                if seqs and seqs[-1] >= total:
                    break
            if time.time() > deadline:
                break
    finally:
        writer.close()
    return {"seqs": seqs, "lags": lags, "retries": retries}


def clients_process(port, path, cookie, clients, connect_rate, total, connected, results, timeout) -> None:
    async def main() -> None:
        deadline = time.time() + timeout
        events = [asyncio.Event() for _ in range(clients)]
        tasks = []
        for i in range(clients):
            tasks.append(asyncio.create_task(watch(port, path, cookie, total, events[i], deadline)))
            # Browsers arrive over time: a storm of handshakes measures something else
            # (each one costs daphne two database round trips before it is accepted).
            await asyncio.sleep(1 / connect_rate)
        await asyncio.gather(*(event.wait() for event in events))
        connected.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        summary = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                summary.append({"error": repr(outcome), "seqs": [], "lags": [], "retries": 0})
            else:
                summary.append(outcome)
        results.put(summary)

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(weighted: list[tuple[float, int]], q: float) -> float:
    """The q-quantile of values given as (value, how many times)."""
    total = sum(count for _, count in weighted)
    seen = 0
    for value, count in weighted:
        seen += count
        if seen >= q * total:
            return value
    return weighted[-1][0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100, help="lines per logs.append (the buddy flushes <= 500)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between batches")
    parser.add_argument("--connect-rate", type=float, default=20, help="new websocket clients per second")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from accounts.models import Account, Membership, Role
    from builds import logs
    from builds.models import Build, BuildOutcome, BuildStatus
    from tests.factories import make_build, make_trigger, make_worker

    if not settings.REDIS_URL:
        print("REDIS_URL is not set: this benchmark measures the Redis channel layer.", file=sys.stderr)
        return 2
    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)

    stamp = int(time.time())
    user = get_user_model().objects.create_user(f"bench-{stamp}")
    account = Account.objects.create(name=f"fan-out bench {stamp}")
    Membership.objects.create(user=user, account=account, role=Role.READ_ONLY)
    build = make_build(make_trigger(make_worker(account, "bench")))
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    cookie = f"sessionid={session.session_key}"
    path = f"/ws/accounts/{account.id}/builds/{build.build_uuid}/"

    port = free_port()
    daphne = subprocess.Popen(
        [
            sys.executable,
            *os.environ.get("BENCH_DAPHNE_PREFIX", "").split(),
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "buildsite.asgi:application",
        ],
        cwd=BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=open(os.environ.get("BENCH_DAPHNE_LOG", os.devnull), "w"),
    )
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(1)
        rss_before = rss_kib(daphne.pid)
        sampler = RssSampler(daphne.pid)
        sampler.start()

        # spawn, not fork: a forked child would share (and on exit close) our database socket.
        # Several processes: parsing every line for every client is the heaviest job here.
        spawn = multiprocessing.get_context("spawn")
        results = spawn.Queue()
        share = args.clients // args.client_processes
        rate = args.connect_rate / args.client_processes
        watchers = []
        for n in range(args.client_processes):
            count = share + (args.clients % args.client_processes if n == 0 else 0)
            connected = spawn.Event()
            process = spawn.Process(
                target=clients_process,
                args=(port, path, cookie, count, rate, args.lines, connected, results, args.timeout),
            )
            watchers.append((process, connected))
        started = time.time()
        for process, _ in watchers:
            process.start()
        for process, connected in watchers:
            if not connected.wait(args.timeout) or not process.is_alive():
                print("clients did not all connect", file=sys.stderr)
                return 1
        connect_seconds = time.time() - started
        rss_connected = rss_kib(daphne.pid)

        build.transition(BuildStatus.INITIALIZING)
        build.transition(BuildStatus.RUNNING)
        produce_start = time.time()
        cpu_start = cpu_seconds(daphne.pid)
        for start in range(0, args.lines, args.batch):
            count = min(args.batch, args.lines - start)
            logs.append(build, [("stdout", f"line {start + i + 1:05d} " + "x" * 60) for i in range(count)])
            time.sleep(args.interval)
        produce_seconds = time.time() - produce_start
        build.stop(BuildOutcome.SUCCESS, exit_code=0)
        summary = [client for _ in watchers for client in results.get(timeout=args.timeout)]
        drain_seconds = time.time() - produce_start - produce_seconds
        daphne_cpu = cpu_seconds(daphne.pid) - cpu_start
        for process, _ in watchers:
            process.join(10)
        time.sleep(3)  # let daphne release what the closed connections held
        rss_after = rss_kib(daphne.pid)
        sampler.running = False
        sampler.join()
    finally:
        daphne.terminate()
        daphne.wait(10)
        session.delete()
        Build.objects.filter(account=account).delete()
        account.workers.all().delete()  # triggers protect the connections the account cascades to
        account.delete()
        user.delete()

    expected = set(range(1, args.lines + 1))
    missing = [len(expected - set(client["seqs"])) for client in summary]
    duplicates = [len(client["seqs"]) - len(set(client["seqs"])) for client in summary]
    out_of_order = sum(client["seqs"] != sorted(client["seqs"]) for client in summary)
    errors = [client["error"] for client in summary if "error" in client]
    lags = sorted(pair for client in summary for pair in client["lags"])
    print(f"fan-out: {args.clients} clients x {args.lines} lines ({args.batch} lines / {args.interval}s batches)")
    print(
        f"  clients connected in {connect_seconds:.1f}s; lines stored in {produce_seconds:.1f}s "
        f"({args.lines / produce_seconds:.0f} lines/s); last client done {drain_seconds:.1f}s after the last line"
    )
    print(
        f"  lines missing per client: max {max(missing)}, total {sum(missing)}; duplicated: {sum(duplicates)}; "
        f"clients out of order: {out_of_order}; handshakes retried: {sum(c['retries'] for c in summary)}; "
        f"client errors: {len(errors)} {errors[:3]}"
    )
    if lags:
        print(
            f"  lag storage->client: p50 {percentile(lags, 0.5) * 1000:.0f} ms, p95 {percentile(lags, 0.95) * 1000:.0f}"
            f" ms, p99 {percentile(lags, 0.99) * 1000:.0f} ms, max {lags[-1][0] * 1000:.0f} ms "
            f"({sum(count for _, count in lags)} deliveries)"
        )
    print(
        f"  daphne CPU while lines flowed: {daphne_cpu:.1f}s in {produce_seconds + drain_seconds:.1f}s; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"  daphne RSS: {rss_before / 1024:.1f} MiB before clients, {rss_connected / 1024:.1f} MiB with "
        f"{args.clients} idle clients, peak {sampler.peak / 1024:.1f} MiB (+{(sampler.peak - rss_before) / 1024:.1f}),"
        f" {rss_after / 1024:.1f} MiB after they left (+{(rss_after - rss_before) / 1024:.1f})"
    )
    return 0 if not errors and sum(missing) == 0 and sum(duplicates) == 0 and not out_of_order else 1


if __name__ == "__main__":
    sys.exit(main())
