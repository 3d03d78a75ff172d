import os
import signal

import pytest

from ember.train.preemption import (PreemptionNotice, default_signals, parse_signals, requeue_slurm_job,
                                    slurm_job_to_requeue)
from testing.preemption import JOB_ID, scontrol_calls, slurm_with_fake_scontrol


def test_default_signals_are_slurm_s_warning_and_sigterm():
    assert default_signals({}) == (signal.SIGTERM,)
    assert default_signals({"SLURM_JOB_ID": "7"}) == (signal.SIGUSR1, signal.SIGTERM)


def test_signals_by_number_or_name():
    assert parse_signals(None) == parse_signals([]) == ()
    assert parse_signals(["SIGUSR2", 15, signal.SIGUSR2]) == (signal.SIGUSR2, signal.SIGTERM)
    assert parse_signals("SIGUSR1") == (signal.SIGUSR1,)
    with pytest.raises(ValueError, match="'SIGFOO' is not a signal"):
        parse_signals(["SIGFOO"])
    with pytest.raises(ValueError, match="SIGKILL cannot be caught"):
        parse_signals([9])


@pytest.fixture
def outer():
    """SIGUSR1 and SIGUSR2 handled by a recorder before the test, restored after it."""
    received, signals = [], (signal.SIGUSR1, signal.SIGUSR2)
    handler = lambda signum, frame: received.append(signum)  # noqa: E731
    previous = [signal.signal(signum, handler) for signum in signals]
    yield handler, received
    for signum, was in zip(signals, previous):
        signal.signal(signum, was)


def test_notice_records_the_highest_signal_and_restores_the_handlers(outer):
    handler, received = outer
    with pytest.raises(RuntimeError), PreemptionNotice([signal.SIGUSR1, signal.SIGUSR2]) as notice:
        assert notice.received == 0 and signal.getsignal(signal.SIGUSR1) is not handler
        signal.raise_signal(signal.SIGUSR2)
        signal.raise_signal(signal.SIGUSR1)
        assert notice.received == signal.SIGUSR2
        raise RuntimeError  # fit() failed: its error goes on, the signal is not raised again
    assert signal.getsignal(signal.SIGUSR1) is handler and signal.getsignal(signal.SIGUSR2) is handler
    assert received == []


def test_a_signal_fit_returned_without_acting_on_reaches_the_previous_handler(outer):
    handler, received = outer
    with PreemptionNotice([signal.SIGUSR1]):
        signal.raise_signal(signal.SIGUSR1)
    assert received == [signal.SIGUSR1]


def test_a_process_forked_during_fit_leaves_warnings_to_it_and_ends_on_sigterm():
    """Data loader and decode pool workers forked inside fit() inherit its handlers: Slurm's warning
    must not end them, and a pool stopping them with SIGTERM must not be kept waiting."""
    signals = (signal.SIGUSR1, signal.SIGTERM)
    previous = [signal.signal(signum, signal.SIG_DFL) for signum in signals]
    try:
        with PreemptionNotice(signals) as notice:
            child = os.fork()
            if child == 0:
                signal.raise_signal(signal.SIGUSR1)
                signal.raise_signal(signal.SIGTERM)
                os._exit(0)  # survived SIGTERM: the test fails below
            _, status = os.waitpid(child, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        assert notice.received == 0
    finally:
        for signum, was in zip(signals, previous):
            signal.signal(signum, was)


def test_requeue_calls_scontrol_once_and_says_what_happened(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", slurm_with_fake_scontrol(tmp_path)["PATH"])
    monkeypatch.delenv("RANK", raising=False)
    assert requeue_slurm_job(JOB_ID) == f"requeued Slurm job {JOB_ID}"
    assert scontrol_calls(tmp_path) == [f"requeue {JOB_ID} rank=none"]


def test_requeue_without_scontrol_or_when_it_fails_is_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "not requeued: scontrol is not on PATH" in requeue_slurm_job(JOB_ID)
    scontrol = tmp_path / "scontrol"
    scontrol.write_text("#!/bin/sh\necho 'Requeue of job is disabled' >&2\nexit 1\n")
    scontrol.chmod(0o755)
    assert "exited with 1: Requeue of job is disabled (a job must be submitted with sbatch --requeue" \
        in requeue_slurm_job(JOB_ID)


def test_only_a_slurm_job_stopped_by_its_warning_signal_is_requeued():
    slurm = {"SLURM_JOB_ID": JOB_ID}
    assert slurm_job_to_requeue(signal.SIGUSR1, slurm) == JOB_ID
    assert slurm_job_to_requeue(signal.SIGTERM, slurm) is None  # scancel, the time limit's kill
    assert slurm_job_to_requeue(signal.SIGUSR1, {}) is None
