"""RunLock between real processes: refusal naming the holder, release, takeover from the dead."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from batchflow import __version__
from batchflow.errors import LockHeld
from batchflow.state.lock import LockInfo, RunLock, read_lock_info

HOLDER = """
    import sys
    from pathlib import Path
    from batchflow.state.lock import RunLock

    lock = RunLock(Path(sys.argv[1]), sys.argv[2], run="x").acquire()
    print("locked", flush=True)
    sys.stdin.readline()  # hold the lock until told to go on, or until killed
    lock.release()
    print("released", flush=True)
    sys.stdin.readline()
"""

CONTENDER = """
    import sys
    from pathlib import Path
    from batchflow.errors import LockHeld
    from batchflow.state.lock import RunLock

    try:
        with RunLock(Path(sys.argv[1]), "destroy", run="x") as lock:
            print("acquired", flush=True)
    except LockHeld as error:
        print(error.message, flush=True)
        sys.exit(error.exit_code)
"""


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / ".batchflow" / "x"


def tell(child, expected: str) -> None:
    """Tell a holder to go on, and wait until it says *expected*."""
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == expected


def test_a_second_process_is_refused_with_the_holder_named(run_dir: Path, spawn) -> None:
    with RunLock(run_dir, "apply", run="x") as lock:
        assert lock.took_over is None
        started = lock.info.started
        contender = spawn(CONTENDER, str(run_dir))
        out, err = contender.communicate(timeout=30)
    assert contender.returncode == LockHeld.exit_code == 1, err
    assert out.strip() == (
        f"run 'x' is locked by apply (pid {os.getpid()} on host {socket.gethostname()} since {started})"
    )
    # Released: the same contender now gets it.
    contender = spawn(CONTENDER, str(run_dir))
    out, err = contender.communicate(timeout=30)
    assert (contender.returncode, out.strip()) == (0, "acquired"), err


def test_this_process_is_refused_while_another_holds_the_lock(run_dir: Path, spawn) -> None:
    holder = spawn(HOLDER, str(run_dir), "apply", wait_for="locked")
    with pytest.raises(LockHeld) as refused:
        RunLock(run_dir, "destroy", run="x").acquire()
    info = read_lock_info(run_dir)
    assert info is not None and info.pid == holder.pid
    assert refused.value.message == (
        f"run 'x' is locked by apply (pid {holder.pid} on host {socket.gethostname()} since {info.started})"
    )
    # Once the holder lets go, the lock is free at once and nothing is taken over.
    tell(holder, "released")
    with RunLock(run_dir, "destroy", run="x") as lock:
        assert lock.took_over is None


def test_lock_info_is_written_while_held_and_removed_on_release(run_dir: Path) -> None:
    with RunLock(run_dir, "apply") as lock:
        document = json.loads((run_dir / "lock.json").read_text())
        assert document == {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "operation": "apply",
            "started": lock.info.started,
            "batchflow_version": __version__,
        }
        assert read_lock_info(run_dir) == lock.info
    assert lock.info is None
    assert read_lock_info(run_dir) is None
    assert not (run_dir / "lock.json").exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(run_dir: Path, spawn) -> None:
    holder = spawn(HOLDER, str(run_dir), "apply", wait_for="locked")
    dead = read_lock_info(run_dir)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    assert (run_dir / "lock.json").exists(), "a killed holder cannot clean up"

    with RunLock(run_dir, "apply", run="x") as lock:
        assert lock.took_over == dead
        assert lock.took_over.pid == holder.pid and lock.took_over.operation == "apply"
        assert read_lock_info(run_dir).pid == os.getpid()
    assert read_lock_info(run_dir) is None


def test_the_same_process_cannot_take_the_lock_twice(run_dir: Path) -> None:
    with RunLock(run_dir, "apply", run="x"):
        with pytest.raises(LockHeld, match=rf"locked by apply \(pid {os.getpid()} "):
            RunLock(run_dir, "apply", run="x").acquire()


def test_refusal_without_readable_lock_info_still_says_it_is_locked(run_dir: Path) -> None:
    with RunLock(run_dir, "apply", run="x"):
        (run_dir / "lock.json").write_text("{torn")
        with pytest.raises(LockHeld, match="locked by another process"):
            RunLock(run_dir, "destroy", run="x").acquire()


def test_the_run_name_defaults_to_the_directory_name(tmp_path: Path) -> None:
    run_dir = tmp_path / "topwords-3f2a"
    with RunLock(run_dir, "apply"):
        with pytest.raises(LockHeld, match="^run 'topwords-3f2a' is locked by apply"):
            RunLock(run_dir, "apply").acquire()


def test_describe_names_operation_pid_host_and_start() -> None:
    info = LockInfo(pid=123, host="h", operation="apply", started="2026-03-01T10:00:00.000Z", batchflow_version="0.1.0")
    assert info.describe() == "apply (pid 123 on host h since 2026-03-01T10:00:00.000Z)"
