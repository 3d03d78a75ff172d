"""Preemption: the signal a scheduler sends before it stops a job makes fit() back up and exit.

Slurm sends the signal of `sbatch --signal=USR1@90` ahead of the time limit and SIGTERM before
its kill (time limit, `scancel`, preemption); Kubernetes sends SIGTERM, then SIGKILL after the
pod's grace period. `BackupAndRestore` holds a `PreemptionNotice` open while fit() runs: its
handler only records which signal came (a handler may interrupt any line of Python, so it does
nothing else), and the callback acts on it at the next optimizer step, where the processes agree.

The process then exits with 128 + the signal's number (`Preempted`): the code a shell, Slurm and
Kubernetes show for a process ended by that signal (143 for SIGTERM, 138 for SIGUSR1), so a
scheduler counts the run as interrupted, not finished, and Kubeflow's ExitCode restart policy
restarts it (130, 137, 138 and 143 are the codes it retries).
"""
import os
import shutil
import signal
import subprocess
import threading
import warnings

# How people and Slurm stop a job (scancel, Ctrl-C on srun, the kill at the time limit): a backup
# they force never requeues it. Slurm's own preemption requeues a job by itself when so configured.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def default_signals(environ=os.environ) -> tuple:
    """In a Slurm job (SLURM_JOB_ID set) SIGUSR1, what `sbatch --signal` is usually given, and
    SIGTERM; elsewhere SIGTERM (Kubernetes, docker stop, systemd)."""
    return (signal.SIGUSR1, signal.SIGTERM) if "SLURM_JOB_ID" in environ else (signal.SIGTERM,)


def parse_signals(signals) -> tuple:
    """`preemption_signals` as a tuple of `signal.Signals`: "auto" (`default_signals`), None or ()
    for none, or signals by number or name ("SIGUSR1")."""
    if isinstance(signals, str) and signals == "auto":
        return default_signals()
    if signals is None:
        return ()
    parsed = []
    for given in [signals] if isinstance(signals, (int, str)) else signals:
        try:
            parsed.append(signal.Signals[given] if isinstance(given, str) else signal.Signals(given))
        except (KeyError, ValueError):
            raise ValueError(f"preemption_signals: {given!r} is not a signal (give signal.SIGUSR1, 10 or "
                             "'SIGUSR1'; 'auto' for the default, None for none)") from None
        if parsed[-1] in (signal.SIGKILL, signal.SIGSTOP):
            raise ValueError(f"preemption_signals: {parsed[-1].name} cannot be caught")
    return tuple(dict.fromkeys(parsed))


class PreemptionNotice:
    """While entered, `signals` only record that they came: `received` is the highest-numbered
    one so far (0: none). On exit the previous handlers are back; a signal that came but that
    fit() returned without acting on is then raised again, for them to handle as before.
    Processes forked meanwhile (data workers) ignore the signals but SIGTERM, which ends them."""

    def __init__(self, signals):
        self.signals, self.received, self._previous, self._owner = tuple(signals), 0, {}, None

    def __enter__(self):
        if self.signals and threading.current_thread() is not threading.main_thread():
            warnings.warn("fit() runs outside the main thread, where Python cannot install signal handlers: "
                          f"{', '.join(s.name for s in self.signals)} will not make it back up before the process "
                          "ends (BackupAndRestore(..., preemption_signals=None) says so and silences this)",
                          RuntimeWarning, stacklevel=2)
            return self
        self._owner = os.getpid()
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._record)
        return self

    def _record(self, signum, frame):
        if os.getpid() != self._owner:
            # A process forked while fit() runs (a data loader's or decode pool's worker) inherits the
            # handler. Slurm signals every process of a job step: a warning is left to the training
            # process, whose exit ends the worker; SIGTERM ends it as before (pools stop workers with it).
            if signum == signal.SIGTERM:
                signal.signal(signum, self._previous_handler(signum))
                signal.raise_signal(signum)
            return
        self.received = max(self.received, signum)

    def _previous_handler(self, sig):
        # None: a handler installed outside Python, which Python cannot put back.
        previous = self._previous[sig]
        return signal.SIG_DFL if previous is None else previous

    def __exit__(self, kind, error, trace):
        for sig in self._previous:
            signal.signal(sig, self._previous_handler(sig))
        installed, self._previous = bool(self._previous), {}
        if installed and kind is None and self.received:
            signal.raise_signal(self.received)


def exit_code(signum: int) -> int:
    """What a process that stops on signal `signum` exits with (see above)."""
    return 128 + signum


class Preempted(SystemExit):
    """Raised by fit() once a preemption signal's backup is written: uncaught, the process exits
    with `code` (`exit_code(signal)`) without a traceback. `report`: what was done, in words."""

    def __init__(self, signum: int, report: str):
        super().__init__(exit_code(signum))
        self.signal, self.report = signal.Signals(signum), report


def slurm_job_to_requeue(signum: int, environ=os.environ) -> str | None:
    """The Slurm job a backup forced by `signum` requeues: this one, unless it is not a Slurm job or
    `signum` is one of the STOP_SIGNALS."""
    return environ.get("SLURM_JOB_ID") if signum not in STOP_SIGNALS else None


def requeue_slurm_job(job_id: str) -> str:
    """`scontrol requeue JOB_ID`; what happened, in words."""
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return f"Slurm job {job_id} not requeued: scontrol is not on PATH (submit the script again to resume)"
    try:
        done = subprocess.run([scontrol, "requeue", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"Slurm job {job_id} not requeued: scontrol requeue {job_id} failed: {error}"
    if done.returncode:
        return (f"Slurm job {job_id} not requeued: scontrol requeue {job_id} exited with {done.returncode}: "
                f"{done.stderr.strip()} (a job must be submitted with sbatch --requeue to be requeued)")
    return f"requeued Slurm job {job_id}"
