"""The shell executor driven through a fake supervisor ROUTER socket."""

import json
import signal
import socket
import subprocess
import sys
import time
import uuid

import msgpack
import pytest

from conftest import WAIT_S, ExecutorThread, FakeSupervisor
from drover_executor import codec
from drover_executor.codec import (Ack, Exited, Goodbye, Hello, Job, Kill, Log, Ping, Reject,
                                   Started)
from drover_executor.examples.shell import ShellExecutor


class FastShellExecutor(ShellExecutor):
    # Outside the main thread no SIGCHLD wakes the loop, so poll often.
    poll_interval = 0.05


def new_run_id():
    return str(uuid.uuid4())


def job(run_id, **config):
    return Job(run_id, json.dumps(config))


def collect_until_exited(sup, run_id, ack=True):
    """Return (STARTED or None, LOG lines as (stream, line), EXITED) of one run."""
    started, lines = None, []
    while True:
        msg = sup.expect((Started, Log, Exited))
        assert msg.flow_run_id == run_id
        if isinstance(msg, Started):
            started = msg
            if ack:
                sup.send(Ack(run_id, Started.TYPE))
        elif isinstance(msg, Log):
            lines.append((msg.stream, msg.line))
        else:
            if ack:
                sup.send(Ack(run_id, Exited.TYPE))
            return started, lines, msg


@pytest.fixture
def executor(supervisor):
    ex = ExecutorThread(FastShellExecutor(), supervisor.endpoint)
    yield ex
    if ex.thread.is_alive():
        ex.stop()


def test_hello_declares_schema(supervisor, executor):
    hello = supervisor.welcome()
    assert hello.executor_id == "test-executor"
    assert hello.type == "shell"
    assert hello.capacity == 4
    assert hello.inventory == []
    schema = json.loads(hello.schema)
    names = [f["name"] for f in schema["fields"]]
    assert names == ["command", "env", "labels", "name", "timeout_seconds", "working_dir"]
    timeout = schema["fields"][4]["schema"]
    assert timeout["type"] == "integer"
    assert timeout["default"] == 3600


def test_run_streams_logs_and_exit_code(supervisor, executor, monkeypatch):
    monkeypatch.setenv("DROVER_TEST_REMOVED", "still here")
    supervisor.welcome()
    run_id = new_run_id()
    command = ('echo "out $DROVER_TEST_VALUE"; echo err >&2; '
               'echo "removed=${DROVER_TEST_REMOVED-unset}"; printf partial; exit 3')
    supervisor.send(job(run_id, command=command,
                        env={"DROVER_TEST_VALUE": "v1", "DROVER_TEST_REMOVED": None}))

    started, lines, exited = collect_until_exited(supervisor, run_id)

    host, _, pid = started.identifier.rpartition(":")
    assert host == socket.gethostname()
    assert pid.isdigit()
    assert (codec.STREAM_STDOUT, "out v1") in lines
    assert (codec.STREAM_STDERR, "err") in lines
    assert (codec.STREAM_STDOUT, "removed=unset") in lines
    assert (codec.STREAM_STDOUT, "partial") in lines
    assert exited.code == 3
    assert exited.error == ""
    assert executor.stop() == 0
    assert isinstance(supervisor.expect(Goodbye), Goodbye)


def test_working_dir_is_used(supervisor, executor, tmp_path):
    supervisor.welcome()
    run_id = new_run_id()
    supervisor.send(job(run_id, command="pwd", working_dir=str(tmp_path)))
    _, lines, exited = collect_until_exited(supervisor, run_id)
    assert lines == [(codec.STREAM_STDOUT, str(tmp_path))]
    assert exited.code == 0


def test_invalid_config_reports_error(supervisor, executor):
    supervisor.welcome()
    run_id = new_run_id()
    supervisor.send(job(run_id, command="true", timeout_seconds="soon"))
    started, _, exited = collect_until_exited(supervisor, run_id)
    assert started is None
    assert "timeout_seconds" in exited.error
    assert "soon" in exited.error


def test_env_value_of_wrong_type_reports_error(supervisor, executor):
    supervisor.welcome()
    run_id = new_run_id()
    supervisor.send(job(run_id, command="true", env={"N": 3}))
    _, _, exited = collect_until_exited(supervisor, run_id)
    assert "env.N" in exited.error


def test_missing_working_dir_fails_to_start(supervisor, executor, tmp_path):
    supervisor.welcome()
    run_id = new_run_id()
    missing = tmp_path / "missing"
    supervisor.send(job(run_id, command="true", working_dir=str(missing)))
    started, _, exited = collect_until_exited(supervisor, run_id)
    assert started is None
    assert exited.error.startswith("failed to start")
    assert str(missing) in exited.error


def test_duplicate_job_is_not_started_twice(supervisor, executor):
    supervisor.welcome()
    run_id = new_run_id()
    supervisor.send(job(run_id, command="sleep 30"))
    first = supervisor.expect(Started)
    supervisor.send(Ack(run_id, Started.TYPE))

    supervisor.send(job(run_id, command="sleep 30"))
    again = supervisor.expect(Started)
    assert again.identifier == first.identifier
    assert len(executor.executor.runs) == 1

    supervisor.send(Kill(run_id, 5))
    _, _, exited = collect_until_exited(supervisor, run_id)
    assert exited.code == -signal.SIGTERM


def test_kill_escalates_to_sigkill(supervisor, executor):
    supervisor.welcome()
    run_id = new_run_id()
    # The ignored SIGTERM is inherited by sleep, so only SIGKILL ends the group.
    supervisor.send(job(run_id, command="trap '' TERM; echo ready; sleep 30"))
    supervisor.expect(Started)
    supervisor.send(Ack(run_id, Started.TYPE))
    assert supervisor.expect(Log).line == "ready"
    supervisor.send(Kill(run_id, 1))
    _, _, exited = collect_until_exited(supervisor, run_id)
    assert exited.code == -signal.SIGKILL


def test_timeout_terminates_process_group(supervisor, executor):
    supervisor.welcome()
    run_id = new_run_id()
    supervisor.send(job(run_id, command="sleep 30", timeout_seconds=1))
    _, lines, exited = collect_until_exited(supervisor, run_id)
    assert exited.code == -signal.SIGTERM
    assert any(stream == codec.STREAM_STDERR and "timeout_seconds=1" in line
               for stream, line in lines)


def test_kill_of_unknown_run_is_ignored(supervisor, executor):
    supervisor.welcome()
    supervisor.send(Kill(new_run_id(), 0))
    run_id = new_run_id()
    supervisor.send(job(run_id, command="exit 0"))
    _, _, exited = collect_until_exited(supervisor, run_id)
    assert exited.code == 0


def test_started_and_exited_resent_until_ack(supervisor, executor):
    supervisor.welcome(ping_ms=100)
    run_id = new_run_id()
    supervisor.send(job(run_id, command="sleep 0.5"))
    first = supervisor.expect(Started)
    second = supervisor.expect(Started)
    assert second == first
    supervisor.send(Ack(run_id, Started.TYPE))
    exited = supervisor.expect(Exited, skip=(Ping, Started))
    assert supervisor.expect(Exited, skip=(Ping, Started)) == exited
    supervisor.send(Ack(run_id, Exited.TYPE))
    # The run is forgotten once its EXITED is acknowledged.
    hello_after = _reconnect_inventory(supervisor)
    assert hello_after == []


def _reconnect_inventory(supervisor):
    supervisor.send(Goodbye("restarting"))
    hello = supervisor.expect(Hello, skip=(Ping, Started, Exited, Log))
    supervisor.send(codec.Welcome("fake-supervisor", 200, 5000))
    return hello.inventory


def test_capacity_is_enforced(supervisor):
    ex = ExecutorThread(FastShellExecutor(), supervisor.endpoint, capacity=1)
    try:
        supervisor.welcome()
        busy, extra = new_run_id(), new_run_id()
        supervisor.send(job(busy, command="sleep 30"))
        supervisor.expect(Started)
        supervisor.send(Ack(busy, Started.TYPE))
        supervisor.send(job(extra, command="true"))
        exited = supervisor.expect(Exited)
        assert exited.flow_run_id == extra
        assert "capacity" in exited.error
        supervisor.send(Ack(extra, Exited.TYPE))
        supervisor.send(Kill(busy, 0))
        while exited.flow_run_id != busy:
            exited = supervisor.expect(Exited)
        assert exited.code in (-signal.SIGTERM, -signal.SIGKILL)
    finally:
        ex.stop()


def test_long_line_is_split(supervisor, executor):
    supervisor.welcome()
    run_id = new_run_id()
    supervisor.send(job(run_id, command="head -c 70000 /dev/zero | tr '\\0' x"))
    _, lines, exited = collect_until_exited(supervisor, run_id)
    assert [len(line) for _, line in lines] == [65536, 70000 - 65536]
    assert exited.code == 0


def test_invalid_utf8_and_nul_are_replaced(supervisor, executor):
    supervisor.welcome()
    run_id = new_run_id()
    supervisor.send(job(run_id, command="printf 'a\\377b\\000c\\n'"))
    _, lines, _ = collect_until_exited(supervisor, run_id)
    assert lines == [(codec.STREAM_STDOUT, "a\ufffdb\ufffdc")]


def test_silent_supervisor_gets_new_hello_with_inventory(supervisor, executor):
    supervisor.welcome(ping_ms=100, liveness_ms=300)
    run_id = new_run_id()
    supervisor.send(job(run_id, command="sleep 30"))
    started = supervisor.expect(Started)
    # Nothing more is sent: no PONG, no ACK, so the executor gives up on this session.
    hello = supervisor.expect(Hello, skip=(Ping, Started), answer_pings=False)
    assert hello.inventory == [codec.RunEntry(run_id, started.identifier, False, 0)]
    supervisor.send(codec.Welcome("fake-supervisor", 200, 5000))
    # The unacknowledged STARTED follows the new WELCOME.
    assert supervisor.expect(Started) == started
    supervisor.send(Kill(run_id, 0))
    _, _, exited = collect_until_exited(supervisor, run_id)
    assert exited.code in (-signal.SIGTERM, -signal.SIGKILL)


def test_malformed_frames_are_dropped(supervisor, executor):
    supervisor.welcome()
    supervisor.send_raw(b"\xc1")
    supervisor.send_raw(msgpack.packb([1, 99]))
    supervisor.send_raw(msgpack.packb([2, 4, "x", "{}"]))
    supervisor.send_raw(msgpack.packb([1, 4, "not-a-uuid", "{}"]))
    run_id = new_run_id()
    supervisor.send(job(run_id, command="exit 7"))
    _, _, exited = collect_until_exited(supervisor, run_id)
    assert exited.code == 7
    assert executor.executor.malformed_count == 4


def test_reject_ends_serve_with_status_1(supervisor, executor):
    supervisor.expect(Hello)
    supervisor.send(Reject("type shell does not match the pool type process"))
    assert executor.join() == 1


def test_foreign_version_answer_is_a_rejection(supervisor, executor):
    supervisor.expect(Hello)
    supervisor.send_raw(msgpack.packb([2, 3, "protocol version 1 is not supported"]))
    assert executor.join() == 1


def test_nothing_but_hello_before_welcome(supervisor, executor):
    supervisor.expect(Hello)
    run_id = new_run_id()
    supervisor.send(job(run_id, command="true"))
    # The JOB is dropped; with no WELCOME the next message is another HELLO.
    assert isinstance(supervisor.recv(), Hello)


def test_describe_prints_schema():
    out = subprocess.run([sys.executable, "-m", "drover_executor.examples.shell", "--describe"],
                         check=True, capture_output=True, text=True).stdout
    schema = json.loads(out)
    assert schema["type"] == "shell"
    assert schema["variables"] is None
    by_name = {f["name"]: f["schema"] for f in schema["fields"]}
    # Declared as Prefect's BaseJobConfiguration declares the common fields.
    nullable_string = [{"type": "string"}, {"type": "null"}]
    assert by_name["command"]["anyOf"] == nullable_string
    assert by_name["command"]["default"] is None
    assert by_name["name"]["anyOf"] == nullable_string
    assert by_name["env"]["additionalProperties"] == {"anyOf": nullable_string}
    assert "default" not in by_name["env"]
    assert by_name["labels"]["additionalProperties"] == {"type": "string"}
    assert by_name["working_dir"]["title"] == "Working Directory"


def test_usage_error_without_connect():
    proc = subprocess.run([sys.executable, "-m", "drover_executor.examples.shell"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--connect" in proc.stderr


def test_restart_reports_run_from_state_dir(tmp_path):
    sup = FakeSupervisor()
    command = [sys.executable, "-m", "drover_executor.examples.shell", "--connect",
               sup.endpoint, "--id", "restart-test", "--state-dir", str(tmp_path)]
    try:
        first = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        sup.welcome()
        run_id = new_run_id()
        sup.send(job(run_id, command="sleep 1; exit 5"))
        started = sup.expect(Started)
        sup.send(Ack(run_id, Started.TYPE))
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0
        sup.expect(Goodbye)

        second = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        hello = sup.expect(Hello)
        assert [e.flow_run_id for e in hello.inventory] == [run_id]
        assert hello.inventory[0].identifier == started.identifier
        sup.send(codec.Welcome("fake-supervisor", 200, 5000))
        # STARTED comes again when its ACK reached the first process after SIGTERM.
        exited = sup.expect(Exited, skip=(Ping, Started))
        # The run's monitor outlived the first process and recorded the status.
        assert exited.flow_run_id == run_id
        assert exited.code == 5
        assert exited.error == ""
        sup.send(Ack(run_id, Exited.TYPE))
        # The acknowledged run is forgotten: its file goes away.
        run_file = tmp_path / "restart-test" / f"{run_id}.json"
        deadline = time.monotonic() + WAIT_S
        while run_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not run_file.exists()
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    finally:
        for proc in ("first", "second"):
            p = locals().get(proc)
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        sup.close()


def test_job_with_rejected_config_fails(supervisor, executor):
    supervisor.welcome()
    run_id = new_run_id()
    supervisor.send_raw(msgpack.packb([1, 4, run_id, "[1, 2]"]))
    exited = supervisor.expect(Exited)
    assert exited.flow_run_id == run_id
    assert exited.error.startswith("invalid job configuration: JOB field config")


def test_missing_program_fails_to_start(supervisor, executor):
    supervisor.welcome()
    run_id = new_run_id()
    supervisor.send(job(run_id, command="/nonexistent/drover-test-program --flag"))
    started, _, exited = collect_until_exited(supervisor, run_id)
    assert started is None
    assert "command not found: /nonexistent/drover-test-program" in exited.error
