"""`manage.py serve`, the README's command for running the site: daphne and a q2
cluster together, on the embedded defaults, stopped with everything they started
when told to."""

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.builds.processes import free_port
from tests.builds.running import wait_for


def descendants(pid: int) -> set[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return set()
    found = set()
    for child in map(int, children):
        found |= {child} | descendants(child)
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own daphne on loopback
            return response.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_whole_process_group_stops_the_site_at_once(tmp_path, signum):
    """As `timeout`, Ctrl+C in a terminal or `kill -- -PGID` send it: to serve and
    everything it started. A q2 cluster signalled that way used to stop its own
    processes and then hang, until serve killed it 30 s later."""
    env = {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "REDIS_URL")}
    env.update(BUILDSITE_DATA_DIR=str(tmp_path), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=settings.BASE_DIR, env=env, check=True)
    port = free_port()
    with open(tmp_path / "serve.log", "w") as output:
        serve = subprocess.Popen(
            [*manage, "serve", "--port", str(port)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), timeout=30, message="the site to answer")
        log = tmp_path / "serve.log"
        wait_for(lambda: "] running." in log.read_text(), timeout=30, message="the q2 cluster to run")
        started = descendants(serve.pid)
        os.killpg(serve.pid, signum)
        serve.wait(timeout=20)
        wait_for(lambda: not any(running(pid) for pid in started), timeout=5, message="every process to stop")
    finally:
        for pid in [serve.pid, *descendants(serve.pid)]:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
    assert serve.returncode == 0
