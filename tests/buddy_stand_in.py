"""A stand-in for the Build Buddy (issue 4) in the browser tests and the fan-out
benchmark: a thread that moves one build through the same public functions the buddy
uses (`Build.transition` to initializing and running, `builds.logs.append` for each
batch of lines, `Build.stop` at the end), so pages see exactly what a real build
produces. Once the runner lands, a test can queue a real build for a q2 cluster
instead and keep every assertion."""

import threading
import time
from collections.abc import Sequence

from django.db import connections
from django.utils import timezone

from builds import logs
from builds.models import Build, BuildOutcome, BuildStatus


def phase(name: str, started, stopped=None, exit_code=None) -> dict:
    return {
        "name": name,
        "started_on": started.isoformat(),
        "stopped_on": stopped.isoformat() if stopped else None,
        "exit_code": exit_code,
    }


class ScriptedBuild(threading.Thread):
    """Prints `lines` (stream, text) in batches of `batch` every `interval` seconds, then
    stops the build as a success. Stops early, like the buddy, when the build was
    stopped by someone else (cancelled)."""

    def __init__(self, build: Build, lines: Sequence[tuple[str, str]], *, batch: int = 2, interval: float = 0.2):
        super().__init__(daemon=True, name=f"scripted-build-{build.build_uuid}")
        self.build = Build.objects.get(pk=build.pk)
        self.lines = list(lines)
        self.batch = batch
        self.interval = interval
        self.written = 0
        self.started_running = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.script()
        except BaseException as e:  # noqa: BLE001 - reported to the test through self.error
            self.error = e
        finally:
            connections.close_all()

    def script(self) -> None:
        build = self.build
        begin = timezone.now()
        if not build.transition(BuildStatus.INITIALIZING):
            return
        cloned = timezone.now()
        phases = [phase("clone", begin, cloned, 0), phase("build", cloned)]
        if not build.transition(BuildStatus.RUNNING, phases=phases):
            return
        self.started_running.set()
        for start in range(0, len(self.lines), self.batch):
            if Build.objects.filter(pk=build.pk, status=BuildStatus.STOPPED).exists():
                return  # cancelled: the real buddy's container would have been killed
            logs.append(build, self.lines[start : start + self.batch])
            self.written += len(self.lines[start : start + self.batch])
            time.sleep(self.interval)
        done = timezone.now()
        phases = [phases[0], phase("build", cloned, done, 0), phase("deploy", done, timezone.now(), 0)]
        build.stop(BuildOutcome.SUCCESS, exit_code=0, phases=phases)

    def finish(self, timeout: float = 60) -> None:
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError("the scripted build did not finish")
        if self.error is not None:
            raise self.error
