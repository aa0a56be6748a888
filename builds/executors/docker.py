"""The docker executor: one container per build, from the build's image, with the
workspace bind-mounted as HOME. The container's own process is `sleep` until the
build's deadline (so a container whose buddy died ends by itself); each phase runs
in it through `docker exec`, with stdout and stderr kept apart by the Docker API, and
with the build's variables, which never enter the container's own configuration.

Hardening: every capability dropped, no-new-privileges, never privileged, no Docker
socket or other host path but the workspace, memory (without swap), CPU and process
limits from settings, and the buddy's own uid so every file written to the workspace
is one the buddy can delete."""

import contextlib
import hashlib
import itertools
import logging
import operator
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import docker
import requests
from django.conf import settings
from django.db import connection
from django.utils import timezone
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.utils.socket import read as read_socket

from builds.errors import InternalError, UserError
from builds.executors import BUILD_HOME, Output

log = logging.getLogger(__name__)

BUILD_LABEL = "buildsite.build"
# Which Buildsite made the container. An engine may serve several (a developer's
# machine, test suites run side by side): the sweep removes only its own leftovers,
# never the running builds of another installation, whose database it cannot see.
INSTALLATION_LABEL = "buildsite.installation"
# A container outlives the build's deadline by this much at most, should nobody
# remove it: the buddy and the reaper normally do it long before.
SLEEP_GRACE_SECONDS = 60


# What the Docker SDK raises when the engine fails: requests' own errors pass through
# it unwrapped when the engine cannot be reached or the connection to it breaks, and
# the socket of a command's output, read directly, raises the socket's own.
ENGINE_ERRORS = (DockerException, requests.exceptions.RequestException, ConnectionError)


def engine_failure(doing: str, error: Exception) -> InternalError:
    """The reason a build ends with when its engine fails: plain words for an engine
    that stopped answering (stopped, restarted, crashed), else the engine's own."""
    if isinstance(error, requests.exceptions.ConnectionError | ConnectionError):
        return InternalError(f"the Docker engine stopped answering while {doing}")
    return InternalError(f"the Docker engine failed while {doing} ({getattr(error, 'explanation', None) or error})")


def installation() -> str:
    """This installation, named after its database, where its builds live."""
    db = connection.settings_dict
    return hashlib.sha256(f"{db['ENGINE']} {db['HOST']} {db['PORT']} {db['NAME']}".encode()).hexdigest()[:16]


def container_name(build_uuid: str) -> str:
    return f"buildsite-build-{build_uuid}"


def engine_answers() -> bool:
    try:
        docker.from_env(timeout=3).ping()
    except Exception:  # noqa: BLE001 - any failure means no usable engine
        return False
    return True


# The exec's output is read from its socket this much at a time: a build that prints
# fast hands the log pump a few large chunks, not a call per line.
READ_BYTES = 64 * 1024
FRAME_HEADER = struct.Struct(">BxxxL")
FRAME_STREAMS = {1: "stdout", 2: "stderr"}


class Frames:
    """Docker's multiplexed stream (a non-TTY exec's stdout and stderr on one socket):
    frames of an 8-byte header (the stream: 1 stdout, 2 stderr, 3 an error of the
    engine; three zero bytes; the payload's length, big-endian) and the payload. Feed
    it what each read returns; frames and their headers may be split across reads."""

    def __init__(self) -> None:
        self._header = b""
        self._stream = 0
        self._left = 0

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        """The payload in `data` as (stream, bytes), consecutive frames of one stream
        joined, in order. Raises DockerException for an error the engine sent."""
        pieces: list[tuple[int, bytes]] = []
        position, end = 0, len(data)
        while position < end:
            if self._left:
                take = min(self._left, end - position)
                pieces.append((self._stream, data[position : position + take]))
                position += take
                self._left -= take
            elif self._header or end - position < FRAME_HEADER.size:
                # A header split across reads.
                missing = FRAME_HEADER.size - len(self._header)
                self._header += data[position : position + missing]
                position += missing
                if len(self._header) == FRAME_HEADER.size:
                    self._stream, self._left = FRAME_HEADER.unpack(self._header)
                    self._header = b""
            else:
                self._stream, self._left = FRAME_HEADER.unpack_from(data, position)
                position += FRAME_HEADER.size
        runs = []
        for stream, run in itertools.groupby(pieces, key=operator.itemgetter(0)):
            payload = b"".join(piece for _, piece in run)
            if stream not in FRAME_STREAMS:
                raise DockerException(f"error from the engine in the output stream: {payload.decode(errors='replace')}")
            runs.append((FRAME_STREAMS[stream], payload))
        return runs


class DockerSandbox:
    home = BUILD_HOME

    def __init__(self, client: docker.DockerClient, container, image: str) -> None:
        self.client = client
        self.container = container
        self.container_id = container.id
        self.description = (
            f"Running the commands in a Docker container from {image} (memory {settings.BUILDSITE_CONTAINER_MEMORY}, "
            f"{settings.BUILDSITE_CONTAINER_CPUS:g} CPUs, {settings.BUILDSITE_CONTAINER_PIDS} processes)."
        )

    def run(self, command: str, workdir: str, env: dict[str, str], output: Output) -> int:
        api = self.client.api
        try:
            exec_id = api.exec_create(
                self.container.id, ["/bin/sh", "-c", command], workdir=workdir, environment={**env, "HOME": BUILD_HOME}
            )["Id"]
            with contextlib.closing(api.exec_start(exec_id, socket=True)) as sock:
                frames = Frames()
                while (data := read_socket(sock, READ_BYTES)) != b"":
                    # None: the read was interrupted; read again.
                    for stream, chunk in frames.feed(data or b""):
                        output(stream, chunk)
            code = api.exec_inspect(exec_id)["ExitCode"]
        except ENGINE_ERRORS as e:
            raise engine_failure("running the command", e) from e
        # No exit code: the container went away under the command, which was killed.
        return 137 if code is None else code

    def kill(self) -> None:
        with contextlib.suppress(NotFound, APIError):
            self.client.api.kill(self.container.id)

    def limit_hit(self) -> str | None:
        """After a failed command: whether the kernel killed it for memory, or refused
        it processes. Read from the container's cgroup counters on this machine."""
        try:
            self.container.reload()
        except ENGINE_ERRORS:
            return None
        state = self.container.attrs["State"]
        counts = cgroup_counts(state.get("Pid") or 0, self.container.id)
        if counts["oom_kill"] or state.get("OOMKilled"):
            return f"Build ran out of memory (limit {settings.BUILDSITE_CONTAINER_MEMORY})"
        if counts["pids_max"]:
            return f"Build hit the limit of {settings.BUILDSITE_CONTAINER_PIDS} processes"
        return None


def cgroup_counts(pid: int, container_id: str) -> dict[str, int]:
    """OOM kills and refused forks in the cgroups of process `pid` (cgroup v1 or v2)."""
    counts = {"oom_kill": 0, "pids_max": 0}
    try:
        membership = Path(f"/proc/{pid}/cgroup").read_text() if pid else ""
    except OSError:
        return counts
    if container_id not in membership:
        # Not this container's process (an engine on another machine, or pid reuse).
        return counts
    root = Path("/sys/fs/cgroup")
    for line in membership.splitlines():
        _, controllers, path = line.split(":", 2)
        path = path.lstrip("/")
        if controllers == "":
            files = [(root / path / "memory.events", "oom_kill"), (root / path / "pids.events", "max")]
        elif "memory" in controllers.split(","):
            files = [(root / "memory" / path / "memory.oom_control", "oom_kill")]
        elif "pids" in controllers.split(","):
            files = [(root / "pids" / path / "pids.events", "max")]
        else:
            continue
        for file, key in files:
            with contextlib.suppress(OSError, ValueError):
                for entry in file.read_text().splitlines():
                    name, _, value = entry.partition(" ")
                    if name == key:
                        counts["oom_kill" if key == "oom_kill" else "pids_max"] += int(value)
    return counts


class DockerExecutor:
    name = "docker"

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None
        self._client_pid = 0

    @property
    def client(self) -> docker.DockerClient:
        # One client per process: q2 forks its workers, and a forked copy of a
        # connection pool would share sockets with its parent.
        if self._client is None or self._client_pid != os.getpid():
            try:
                self._client = docker.from_env(timeout=60)
            except DockerException as e:
                raise InternalError(f"no Docker engine answers ({e})") from e
            self._client_pid = os.getpid()
        return self._client

    @contextlib.contextmanager
    def environment(self, build, workspace: Path) -> Iterator[DockerSandbox]:
        client = self.client
        image = build.build_image
        try:
            self.ensure_image(image)
            deadline = build.deadline or timezone.now()
            seconds = max(int((deadline - timezone.now()).total_seconds()), 0) + SLEEP_GRACE_SECONDS
            container = client.containers.create(
                image,
                command=["sleep", str(seconds)],
                name=container_name(str(build.build_uuid)),
                labels={
                    BUILD_LABEL: str(build.build_uuid),
                    INSTALLATION_LABEL: installation(),
                    "buildsite.account": str(build.account_id),
                },
                environment={"HOME": BUILD_HOME},
                user=f"{os.getuid()}:{os.getgid()}",
                working_dir=BUILD_HOME,
                volumes={str(workspace): {"bind": BUILD_HOME, "mode": "rw"}},
                # tini as PID 1 reaps the orphans a build leaves, which would
                # otherwise pile up as zombies against the process limit.
                init=True,
                mem_limit=settings.BUILDSITE_CONTAINER_MEMORY,
                memswap_limit=settings.BUILDSITE_CONTAINER_MEMORY,
                nano_cpus=int(settings.BUILDSITE_CONTAINER_CPUS * 1e9),
                pids_limit=settings.BUILDSITE_CONTAINER_PIDS,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                privileged=False,
            )
        except ENGINE_ERRORS as e:
            raise engine_failure("creating the build container", e) from e
        try:
            try:
                container.start()
            except ENGINE_ERRORS as e:
                raise engine_failure("starting the build container", e) from e
            yield DockerSandbox(client, container, image)
        finally:
            try:
                container.remove(force=True)
            except NotFound:
                pass
            except ENGINE_ERRORS:
                # The sweep removes it, once the engine answers again.
                log.warning("could not remove the container of build %s", build.build_uuid, exc_info=True)

    def ensure_image(self, image: str) -> None:
        """Pull only an image this engine does not have."""
        try:
            self.client.images.get(image)
            return
        except ImageNotFound:
            pass
        try:
            self.client.images.pull(image)
        except DockerException as e:
            raise UserError(f"The build image {image} is not on this node and could not be pulled: {e}") from e

    def kill(self, build_uuid: str) -> None:
        with contextlib.suppress(NotFound, APIError):
            self.client.api.kill(container_name(build_uuid))

    def remove(self, build_uuid: str) -> None:
        with contextlib.suppress(NotFound, APIError):
            self.client.api.remove_container(container_name(build_uuid), force=True)

    def leftovers(self) -> set[str]:
        ours = [BUILD_LABEL, f"{INSTALLATION_LABEL}={installation()}"]
        # ignore_removed: a build's container removed while the list is read is no leftover.
        containers = self.client.containers.list(all=True, filters={"label": ours}, ignore_removed=True)
        return {container.labels[BUILD_LABEL] for container in containers}
