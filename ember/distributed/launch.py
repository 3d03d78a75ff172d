"""`ember launch -n N script.py [args]`: run a training script on N processes per machine.

A thin front to torchrun (`torch.distributed.run`): every torchrun option passes through
unchanged (`--nnodes`, `--rdzv-backend`, `--rdzv-endpoint`, `--rdzv-id`, `--max-restarts`,
`--redirects`, `--log-dir`, ...), and `-n` is short for `--nproc-per-node`. On one
machine it picks a free port itself. When a worker fails, the others are stopped and
the command exits non-zero, naming the worker that failed first and its error.

Preemption (docs/guides/resume.md): SIGUSR1, what Slurm is usually told to send before the time
limit, joins the signals torchrun passes on to the workers (SIGTERM, SIGINT, SIGHUP, SIGQUIT), so
that it reaches fit() instead of ending the launcher. The command exits with the code of a worker
that stopped on a preemption signal (128 + its number), or, when the launcher itself received the
signal, with 128 + its number, once the workers have exited or `--shutdown-timeout` has passed.
"""
import sys

from torch.distributed.elastic.multiprocessing import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser, run as torchrun


def add_arguments(parser):
    for action in get_args_parser()._actions:
        if "-h" in action.option_strings:
            continue
        if action.dest == "nproc_per_node":
            action.option_strings = ["-n", *action.option_strings]
            action.help = "processes on this machine (one per GPU: 'gpu'); default 1"
        if action.dest == "signals_to_handle" and "SIGUSR1" not in action.default.split(","):
            action.default += ",SIGUSR1"
            action.help = f"signals passed on to the workers; default {action.default}"
        parser._add_action(action)


def run(args) -> int:
    try:
        torchrun(args)
    except ChildFailedError as failure:
        rank, first = failure.get_first_failure()
        if first.exitcode > 128:  # 128 + a signal's number: fit() backed up on it (a crash gives 1, a kill -N)
            print(f"ember launch: worker rank {rank} exited with {first.exitcode}, backed up on a preemption signal",
                  file=sys.stderr)
            return first.exitcode
        print(failure.format_msg(), file=sys.stderr)
        print(f"ember launch: worker rank {rank} failed first (exit code {first.exitcode}); the other workers "
              "were stopped. Its error is above.", file=sys.stderr)
        return 1
    except SignalException as stop:
        print(f"ember launch: {stop.sigval.name} received and passed on to the workers", file=sys.stderr)
        return 128 + stop.sigval
    return 0
