import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from accounts.models import Account
from builds import executors


class Command(BaseCommand):
    help = "Run the web server (daphne) and the build workers (q2 cluster) together."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options) -> None:
        # Samples of processes from a previous run would be summed into this one's.
        for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
            stale.unlink()
        # A connection pool for daphne (a new thread per request), never for the q2
        # cluster (it forks, and a pool does not survive a fork).
        web_env = dict(os.environ)
        if settings.IS_POSTGRES:
            web_env.setdefault("BUILDSITE_DB_POOL", "10")
        cluster_env = {name: value for name, value in os.environ.items() if name != "BUILDSITE_DB_POOL"}
        # Each in a session of its own, so that only this process gets a signal sent to
        # its whole group (Ctrl+C, `timeout`, `kill -- -PGID`) and passes on one SIGTERM.
        # django-q2's own processes die at once on a signal of their own, and its
        # cluster then never finishes stopping.
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "buildsite.asgi:application"],
                env=web_env,
                start_new_session=True,
            ),
            subprocess.Popen([sys.executable, "manage.py", "qcluster"], env=cluster_env, start_new_session=True),
        ]
        base = f"http://{host}:{port}"
        account = Account.objects.order_by("created_on").first()
        self.stdout.write(
            f"\nBuildsite is starting ({settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, "
            f"builds run by {executors.describe()}).\n"
            f"  Dashboard: {base}/\n"
            f"  Admin:     {base}/admin/\n"
            f"  API base:  {base}/client/v4/accounts/{account.id if account else '<account_id>'}/builds/\n"
            "Press Ctrl+C to stop.\n"
        )
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        # SIGHUP too: a closed terminal no longer reaches the processes by itself.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stop)
        # Either process dying takes the other down: half a service is worse than none.
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.5)
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if not stopping:
            sys.exit(1)
