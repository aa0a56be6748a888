"""The Build Buddy: owns one build from `initializing` to `stopped`, in three layers
(after Read the Docs):

- the task (`run`, `BuildTask.run`): claims the build, turns whatever happened into an
  outcome and a plain reason with one handler, stops the build, frees its slot;
- the steps (clone, build, deploy): each announced in the log with its duration and
  recorded in `build.phases`; the first failing one ends the build;
- the environment: the workspace and the executor's sandbox, context managers that
  always remove what they made.

A Watch thread beats the heartbeat and, the moment the build is stopped from outside
(cancel, reaper) or passes its deadline, kills the step that is running."""

import base64
import contextlib
import logging
import os
import posixpath
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from django.conf import settings
from django.db import connection
from django.utils import timezone

from builds import executors, logs, scheduler
from builds.errors import BuildError, InternalError, Stopped, TimedOut, UserError
from builds.executors.local import Process
from builds.models import ACTIVE_STATUSES, Build, BuildOutcome, BuildStatus, Provider
from buildsite.structured_logging import bind, carrying_context

log = logging.getLogger(__name__)

# Git's username for a token without one, per provider.
TOKEN_USERNAMES = {Provider.GITHUB: "x-access-token", Provider.GITLAB: "oauth2"}


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run(build_uuid: str) -> str:
    """The django-q2 task: run the build if it is waiting for a buddy. A build that is
    not (cancelled or reaped meanwhile, or this task delivered twice) is left alone.
    Every log line written meanwhile, by any of its threads, is tagged with the build."""
    build = Build.objects.filter(build_uuid=build_uuid).first()
    with bind(build_uuid=build_uuid, account_id=build.account_id if build else None):
        if build is None or not build.claim(runner_name()):
            log.info("build %s is not waiting for a buddy; not running it", build_uuid)
            return "not run"
        log.info("build %s started on %s", build_uuid, build.runner)
        try:
            task = BuildTask(build)
        except Exception:  # its secrets could not be read (a lost encryption key, say)
            log.exception("could not prepare build %s", build_uuid)
            build.stop(BuildOutcome.TERMINATED, InternalError("its secrets could not be read").message)
            scheduler.dispatch({build.account_id})
            return build.build_outcome
        task.run()
        build.refresh_from_db()
        log.info("build %s ended %s: %s", build_uuid, build.build_outcome, build.reason or "no reason")
        return build.build_outcome


class Watch:
    """From a thread of its own: beats the build's heartbeat every
    BUILDSITE_HEARTBEAT_SECONDS and looks every second whether the build was stopped
    from outside or passed its deadline; then it kills the running step, so the buddy
    stops even where cancel could not reach the build's engine."""

    def __init__(self, build: Build) -> None:
        self.build = build
        self.deadline = build.deadline
        self.ended = False
        self._kill: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=carrying_context(self._run), name=f"watch-{build.build_uuid}", daemon=True
        )

    def __enter__(self) -> "Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()

    @contextlib.contextmanager
    def killing(self, kill: Callable[[], None]) -> Iterator[None]:
        """While the block runs, the end of the build calls `kill`."""
        with self._lock:
            self._kill = kill
            ended = self.ended
        if ended:
            kill()
        try:
            yield
        finally:
            with self._lock:
                self._kill = None

    def check(self) -> None:
        """Raise if the build must not go on: Stopped when it was stopped from outside,
        TimedOut past its deadline. Reads the database, so it is exact even between
        two ticks of the thread."""
        if not Build.objects.filter(pk=self.build.pk, status__in=ACTIVE_STATUSES).exists():
            raise Stopped
        if timezone.now() >= self.deadline:
            raise TimedOut

    def _end(self) -> None:
        with self._lock:
            self.ended = True
            kill = self._kill
        if kill is not None:
            kill()

    def _run(self) -> None:
        interval = min(1.0, settings.BUILDSITE_HEARTBEAT_SECONDS)
        last_beat = time.monotonic()
        try:
            while not self._done.wait(interval):
                try:
                    if time.monotonic() - last_beat >= settings.BUILDSITE_HEARTBEAT_SECONDS:
                        alive = self.build.beat()
                        last_beat = time.monotonic()
                    else:
                        alive = Build.objects.filter(pk=self.build.pk, status__in=ACTIVE_STATUSES).exists()
                    if not alive or timezone.now() >= self.deadline:
                        self._end()
                except Exception:  # noqa: BLE001 - keep watching; a dead heartbeat is the reaper's cue
                    log.warning("watch of build %s failed", self.build.build_uuid, exc_info=True)
                    # A fresh connection on the next tick, should this one be broken.
                    connection.close()
        finally:
            connection.close()


class BuildTask:
    def __init__(self, build: Build) -> None:
        self.build = build
        self.credential, self.clone_url = clone_credential(build)
        self.plain_variables, self.secret_variables = build.trigger.variables() if build.trigger else ({}, {})
        self.pump = logs.LogPump(build, [*self.secret_variables.values(), *credential_forms(self.credential)])
        self.watch = Watch(build)
        self.started = time.monotonic()

    def run(self) -> None:
        build = self.build
        error: BuildError | None = None
        stopped = False
        with self.watch:
            # The workspace and the sandbox, removed last: the build's outcome does not
            # wait for the clean-up.
            with contextlib.ExitStack() as environment:
                try:
                    with self.pump:
                        try:
                            self.steps(environment)
                        except Stopped:
                            stopped = True
                        except BuildError as e:
                            error = e
                        except Exception as e:  # the one handler: every failure ends the build with a reason
                            log.exception("build %s failed in Buildsite", build.build_uuid)
                            error = InternalError(f"an unexpected error ({type(e).__name__})")
                        self.pump.system(self.summary(stopped, error))
                except Exception:  # storing the log failed; the build still gets its outcome
                    log.exception("could not store the log of build %s", build.build_uuid)
                    error = error or InternalError("its log could not be stored")
                # Stopped only once every line is stored, so whoever sees the build
                # stopped can read its whole log.
                if not stopped:
                    self.stop(error)
                # The slot is free (here, or when the build was cancelled): the
                # account's next queued build starts now, not at the next sweep.
                scheduler.dispatch({build.account_id})

    def stop(self, error: BuildError | None) -> None:
        if error is None:
            # Every command exited 0, so the build did.
            self.build.stop(BuildOutcome.SUCCESS, exit_code=0)
        else:
            reason = logs.clean(error.message, self.pump.secrets)[0]
            self.build.stop(error.outcome, reason, exit_code=error.exit_code)

    def summary(self, stopped: bool, error: BuildError | None) -> str:
        took = f"{time.monotonic() - self.started:.1f} s"
        if stopped:
            self.build.refresh_from_db()
            return f"Build {self.build.build_outcome} after {took}: {self.build.reason or 'no reason given'}"
        if error is None:
            return f"Build succeeded in {took}"
        ended = "failed" if error.outcome == BuildOutcome.FAIL else error.outcome
        return f"Build {ended} after {took}: {error.message}"

    # The steps.

    def steps(self, environment: contextlib.ExitStack) -> None:
        build = self.build
        self.pump.system(f"Build {build.build_uuid} of {build.repo_name or build.clone_url} on {socket.gethostname()}")
        workspace = environment.enter_context(executors.workspace(str(build.build_uuid)))
        sandbox_cm = executors.get_executor().environment(build, workspace)
        # Starting a container takes a few hundred milliseconds: it starts while the
        # clone runs. A failed clone still ends the build first (its error wins), and
        # the sandbox, once started, is removed with the rest of the environment.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox") as starter:
            starting = starter.submit(carrying_context(lambda: environment.enter_context(sandbox_cm)))
            commit = self.clone(workspace)
            root = self.root_directory(workspace)
            sandbox = starting.result()
        self.pump.system(sandbox.description)
        # The plain variables are recorded with the move (a secret is never copied onto the build).
        running = {"container_id": sandbox.container_id, "environment_variables": self.plain_variables}
        if not build.transition(BuildStatus.RUNNING, **running):
            raise Stopped
        workdir = posixpath.join(sandbox.home, "repo", root)
        env = self.environment(commit)
        self.command(sandbox, workdir, env, "build", "Build command", build.build_command)
        self.command(sandbox, workdir, env, "deploy", "Deploy command", build.deploy_command)

    @contextlib.contextmanager
    def phase(self, name: str, label: str, announcement: str) -> Iterator[dict]:
        """One step: announced in the log, then its duration; recorded in build.phases."""
        record = {"name": name, "started_on": timezone.now().isoformat(), "stopped_on": None, "exit_code": None}
        self.build.phases.append(record)
        self.save_phases()
        self.pump.system(announcement)
        started = time.monotonic()
        ok = False
        try:
            yield record
            ok = record["exit_code"] in (None, 0)
        finally:
            record["stopped_on"] = timezone.now().isoformat()
            self.save_phases()
            took = f"{time.monotonic() - started:.1f} s"
            self.pump.system(f"{label} finished in {took}" if ok else f"{label} failed after {took}")

    def save_phases(self) -> None:
        Build.objects.filter(pk=self.build.pk).update(phases=self.build.phases)

    def clone(self, workspace: Path) -> str:
        """The repository at the build's commit (or the branch tip, recorded on the
        build) into workspace/repo, with git. A credential reaches git only through its
        environment: never in argv, the log or .git/config."""
        build = self.build
        repo = workspace / "repo"
        ref = build.commit_hash or f"refs/heads/{build.branch}"
        env = git_environment(workspace, self.clone_url, self.credential)
        announcement = f"Cloning {self.clone_url} ({build.branch} at {build.short_commit or 'its tip'})"
        with self.phase("clone", "Clone", announcement):
            for argv in (
                ["git", "init", "--quiet", str(repo)],
                ["git", "-C", str(repo), "remote", "add", "origin", self.clone_url],
                ["git", "-C", str(repo), "fetch", "--quiet", "--depth=1", "--no-tags", "origin", ref],
                ["git", "-C", str(repo), "checkout", "--quiet", "--detach", "FETCH_HEAD"],
            ):
                self.git(argv, workspace, env)
            commit = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "HEAD"], env=env, capture_output=True, text=True, check=True
            ).stdout.strip()
        if commit != build.commit_hash:
            Build.objects.filter(pk=build.pk).update(commit_hash=commit)
            build.commit_hash = commit
        self.pump.system(f"Checked out {commit}")
        return commit

    def git(self, argv: list[str], workspace: Path, env: dict[str, str]) -> None:
        errors: list[bytes] = []

        def output(stream: str, data: bytes) -> None:
            self.pump.write(stream, data)
            if stream == "stderr":
                errors.append(data)

        process = Process(argv, cwd=workspace, env=env, output=output)
        with self.watch.killing(process.kill):
            code = process.wait()
        self.pump.end_of_output()
        self.watch.check()
        if code != 0:
            message = b"".join(errors).decode(errors="replace").strip().splitlines()
            detail = message[-1] if message else f"git exited with code {code}"
            raise UserError(f"Cloning the repository failed: {detail}")

    def root_directory(self, workspace: Path) -> str:
        root = self.build.root_directory.strip("/")
        if ".." in root.split("/") or not (workspace / "repo" / root).is_dir():
            raise UserError(f"The root directory {self.build.root_directory} is not a directory of the repository")
        return root

    def command(
        self, sandbox: executors.Sandbox, workdir: str, env: dict[str, str], name: str, label: str, command: str
    ) -> None:
        if not command.strip():
            self.pump.system(f"No {label.lower()}")
            return
        self.watch.check()
        with self.phase(name, label, f"{label}: {command}") as record:
            with self.watch.killing(sandbox.kill):
                try:
                    record["exit_code"] = sandbox.run(command, workdir, env, self.pump.write)
                except Exception:
                    # An engine error because the build was killed is not an error.
                    self.watch.check()
                    raise
                finally:
                    self.pump.end_of_output()
            self.watch.check()
        code = record["exit_code"]
        if code != 0:
            raise UserError(sandbox.limit_hit() or f"{label} exited with code {code}", exit_code=code)

    def environment(self, commit: str) -> dict[str, str]:
        build = self.build
        return {
            **self.plain_variables,
            **self.secret_variables,
            "CI": "true",
            "WORKERS_CI": "1",
            "WORKERS_CI_BUILD_UUID": str(build.build_uuid),
            "WORKERS_CI_COMMIT_SHA": commit,
            "WORKERS_CI_BRANCH": build.branch,
        }


def clone_credential(build: Build) -> tuple[str, str]:
    """(username:password or "", the clone URL without any credential in it)."""
    parts = urlsplit(build.clone_url)
    credential = ""
    if parts.username or parts.password:
        credential = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    token = build.trigger.repo_connection.clone_credential() if build.trigger else ""
    if token:
        credential = token if ":" in token else f"{TOKEN_USERNAMES.get(build.provider_type, 'git')}:{token}"
    return credential, urlunsplit(parts)


def credential_forms(credential: str) -> list[str]:
    """Every form in which the credential could show up in output, to mask them all."""
    if not credential:
        return []
    _, _, password = credential.partition(":")
    return [credential, password, basic_auth(credential)]


def basic_auth(credential: str) -> str:
    return base64.b64encode(credential.encode()).decode()


def git_environment(home: Path, url: str, credential: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C",
        # Never wait for a person to type a password.
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        # Neither this machine's nor its user's git configuration applies to builds.
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": ":".join(settings.BUILDSITE_CLONE_PROTOCOLS),
    }
    parts = urlsplit(url)
    if credential and parts.scheme in ("http", "https"):
        # Configuration through the environment (git >= 2.31) is never written to
        # .git/config, and scoping it to the repository's origin keeps it from being
        # sent to any other host.
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0=f"http.{parts.scheme}://{parts.netloc}/.extraHeader",
            GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic_auth(credential)}",
        )
    return env
