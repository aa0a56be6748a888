import os
import struct
import threading
import uuid

import docker
import pytest
from django.core.exceptions import ImproperlyConfigured

from builds import executors, logs
from builds.executors import docker as docker_executor
from builds.executors import local
from builds.executors.docker import (
    BUILD_LABEL,
    INSTALLATION_LABEL,
    DockerExecutor,
    Frames,
    container_name,
    installation,
)
from builds.executors.local import LocalExecutor, LocalSandbox
from builds.models import Build, BuildOutcome
from tests.builds.running import in_thread, queue_build, run_queued, wait_for, wait_for_line
from tests.conftest import TEST_IMAGE
from tests.factories import make_build, make_connection, make_git_repo, make_trigger, make_worker


@pytest.fixture
def trigger(account, tmp_path, build_settings):
    url, _ = make_git_repo(tmp_path / "site.git", {"README": "hello\n"})
    return make_trigger(
        make_worker(account, "site"),
        make_connection(account, clone_url=url),
        build_command="echo started; sleep 30",
        deploy_command="true",
    )


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_a_build_container_is_unprivileged_and_limited(trigger, q_sync, build_settings):
    build = queue_build(trigger)
    buddy = in_thread(run_queued, build)
    wait_for_line(build, "started")
    container = docker.from_env().containers.get(container_name(str(build.build_uuid)))
    host = container.attrs["HostConfig"]
    try:
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["Privileged"] is False
        assert host["Memory"] == 256 * 1024 * 1024 and host["MemorySwap"] == host["Memory"]
        assert host["NanoCpus"] == 1_000_000_000
        assert host["PidsLimit"] == 64
        assert host["Init"] is True
        assert host["NetworkMode"] not in ("host", "none")
        # The workspace and nothing else from the host: no Docker socket.
        mounts = container.attrs["Mounts"]
        assert [(m["Type"], m["Source"], m["Destination"], m["RW"]) for m in mounts] == [
            ("bind", str(build_settings.BUILDSITE_WORKSPACE_DIR / str(build.build_uuid)), "/opt/buildhome", True)
        ]
        assert not any("docker.sock" in m["Source"] for m in mounts)
        assert container.attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
        # The build's variables (secrets too) go to each command, not into the
        # container's configuration, which anyone who may inspect containers can read.
        assert not [v for v in container.attrs["Config"]["Env"] if v.startswith(("CI=", "WORKERS_CI"))]
        assert container.labels[BUILD_LABEL] == str(build.build_uuid)
        assert container.labels[INSTALLATION_LABEL] == installation()
        assert Build.objects.get(pk=build.pk).container_id == container.id
    finally:
        Build.objects.get(pk=build.pk).cancel("Cancelled by the test")
        buddy.join(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_the_local_sandbox_sees_the_workspace_but_not_the_hosts_data(trigger, q_sync, build_settings, settings):
    if not LocalExecutor().sandboxed:
        pytest.skip("bubblewrap is not installed")
    build_settings.BUILDSITE_EXECUTOR = "local"
    trigger.build_command = (
        f"cat README; test -e {settings.DATA_DIR} && echo data visible || echo data hidden; "
        "touch /usr/escape 2>/dev/null && echo usr writable || echo usr read-only; echo $HOME"
    )
    trigger.save()
    build = run_queued(queue_build(trigger))

    assert build.build_outcome == BuildOutcome.SUCCESS, build.reason
    output = [line.text for line in logs.all_lines(build, "stdout")]
    assert output[:4] == ["hello", "data hidden", "usr read-only", "/opt/buildhome"]
    assert any("inside bubblewrap" in line.text for line in logs.all_lines(build, "system"))


@pytest.mark.django_db(transaction=True)
def test_without_bubblewrap_the_build_log_warns_loudly(trigger, q_sync, build_settings, monkeypatch):
    build_settings.BUILDSITE_EXECUTOR = "local"
    # As on a machine where bubblewrap is not installed.
    monkeypatch.setattr(local.shutil, "which", lambda name: None)
    executors._resolve.cache_clear()
    trigger.build_command = "cat README; pwd"
    trigger.save()
    try:
        build = run_queued(queue_build(trigger))
    finally:
        executors._resolve.cache_clear()

    assert build.build_outcome == BuildOutcome.SUCCESS
    assert any(line.text.startswith("WARNING: bubblewrap") for line in logs.all_lines(build, "system"))
    output = [line.text for line in logs.all_lines(build, "stdout")]
    assert output[0] == "hello"
    assert output[1] == str(build_settings.BUILDSITE_WORKSPACE_DIR / str(build.build_uuid) / "repo")


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_frames_are_parsed_whatever_the_reads_split():
    stream = b"".join(
        [
            frame(1, b"one\n"),
            frame(1, b"two\n"),
            frame(1, b""),
            frame(2, b"warning\n"),
            frame(1, b"thr"),
            frame(1, b"ee\n"),
            frame(2, b"x" * 300),
        ]
    )
    # Read whole: consecutive frames of one stream arrive as one chunk.
    assert Frames().feed(stream) == [
        ("stdout", b"one\ntwo\n"),
        ("stderr", b"warning\n"),
        ("stdout", b"three\n"),
        ("stderr", b"x" * 300),
    ]
    # Split anywhere (a header or a payload across reads), nothing is lost or reordered.
    for size in (1, 2, 3, 7, 8, 9, 13, 64):
        frames, received = Frames(), []
        for start in range(0, len(stream), size):
            received += frames.feed(stream[start : start + size])
        merged: list[tuple[str, bytes]] = []
        for name, data in received:
            if merged and merged[-1][0] == name:
                merged[-1] = (name, merged[-1][1] + data)
            else:
                merged.append((name, data))
        assert merged == [
            ("stdout", b"one\ntwo\n"),
            ("stderr", b"warning\n"),
            ("stdout", b"three\n"),
            ("stderr", b"x" * 300),
        ], size


def test_an_error_the_engine_sends_in_the_stream_is_an_engine_error():
    with pytest.raises(docker.errors.DockerException, match="container is gone"):
        Frames().feed(frame(1, b"partial output\n") + frame(3, b"container is gone"))


@pytest.mark.docker
@pytest.mark.django_db
@pytest.mark.parametrize("read_bytes", [docker_executor.READ_BYTES, 5])
def test_docker_output_keeps_stdout_and_stderr_apart_and_in_order(
    account, tmp_path, build_settings, monkeypatch, read_bytes
):
    # 5 bytes a read: every header and most frames are split across reads.
    monkeypatch.setattr(docker_executor, "READ_BYTES", read_bytes)
    build = make_build(make_trigger(make_worker(account, "frames"), build_image=TEST_IMAGE))
    received: list[tuple[str, bytes]] = []
    command = (
        "echo first; sleep 0.2; echo second >&2; sleep 0.2; echo third; "
        "for i in $(seq 1 2000); do echo out $i; echo err $i >&2; done; printf end"
    )
    with DockerExecutor().environment(build, tmp_path) as sandbox:
        code = sandbox.run(command, sandbox.home, {}, lambda stream, data: received.append((stream, data)))
    assert code == 0
    stdout = b"".join(data for stream, data in received if stream == "stdout").decode()
    stderr = b"".join(data for stream, data in received if stream == "stderr").decode()
    assert stdout == "first\nthird\n" + "".join(f"out {i}\n" for i in range(1, 2001)) + "end"
    assert stderr == "second\n" + "".join(f"err {i}\n" for i in range(1, 2001))
    # Output printed apart in time arrives in the order it was printed.
    assert b"".join(data for _, data in received).startswith(b"first\nsecond\nthird\n")


def test_local_build_processes_are_found_and_killed_by_build_id(tmp_path):
    build_uuid = str(uuid.uuid4())
    sandbox = LocalSandbox(tmp_path, sandboxed=False)
    result = {}
    runner = threading.Thread(
        target=lambda: result.update(
            code=sandbox.run(
                "echo up; sleep 30", str(tmp_path), {"WORKERS_CI_BUILD_UUID": build_uuid}, lambda s, d: None
            )
        )
    )
    runner.start()
    executor = LocalExecutor()
    wait_for(lambda: build_uuid in executor.leftovers(), message="the build's processes")

    executor.kill(build_uuid)
    runner.join(timeout=5)
    assert not runner.is_alive()
    assert result["code"] == 137
    assert build_uuid not in executor.leftovers()


def test_the_executor_is_resolved_from_settings(settings, monkeypatch, tmp_path):
    executors._resolve.cache_clear()
    try:
        settings.BUILDSITE_EXECUTOR = "local"
        assert executors.get_executor().name == "local"
        settings.BUILDSITE_EXECUTOR = "docker"
        assert executors.get_executor().name == "docker"
        # auto without an engine answering: local.
        monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
        settings.BUILDSITE_EXECUTOR = "auto"
        assert executors.get_executor().name == "local"
        settings.BUILDSITE_EXECUTOR = "podman"
        with pytest.raises(ImproperlyConfigured):
            executors.get_executor()
    finally:
        executors._resolve.cache_clear()


def test_serve_says_which_executor_runs_builds(settings, monkeypatch):
    settings.BUILDSITE_EXECUTOR = "local"
    executors._resolve.cache_clear()
    try:
        monkeypatch.setattr(local.shutil, "which", lambda name: "/usr/bin/bwrap")
        assert executors.describe() == "local (BUILDSITE_EXECUTOR=local), inside bubblewrap"
        executors._resolve.cache_clear()
        monkeypatch.setattr(local.shutil, "which", lambda name: None)
        assert executors.describe() == "local (BUILDSITE_EXECUTOR=local), UNSANDBOXED: install bubblewrap"
    finally:
        executors._resolve.cache_clear()


@pytest.mark.docker
def test_serve_names_the_docker_engine_when_it_answers(settings):
    settings.BUILDSITE_EXECUTOR = "auto"
    executors._resolve.cache_clear()
    try:
        assert executors.describe() == "docker (BUILDSITE_EXECUTOR=auto)"
    finally:
        executors._resolve.cache_clear()
