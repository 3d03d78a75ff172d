"""`ember launch -n N script.py [args]`: run a training script on N processes per machine.

A thin front to torchrun (`torch.distributed.run`): every torchrun option passes through
unchanged (`--nnodes`, `--rdzv-backend`, `--rdzv-endpoint`, `--rdzv-id`, `--max-restarts`,
`--redirects`, `--log-dir`, ...), and `-n` is short for `--nproc-per-node`. On one
machine it picks a free port itself. When a worker fails, the others are stopped and
the command exits non-zero, naming the worker that failed first and its error.
"""
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser, run as torchrun


def add_arguments(parser):
    for action in get_args_parser()._actions:
        if "-h" in action.option_strings:
            continue
        if action.dest == "nproc_per_node":
            action.option_strings = ["-n", *action.option_strings]
            action.help = "processes on this machine (one per GPU: 'gpu'); default 1"
        parser._add_action(action)


def run(args) -> int:
    try:
        torchrun(args)
    except ChildFailedError as failure:
        rank, first = failure.get_first_failure()
        print(failure.format_msg(), file=sys.stderr)
        print(f"ember launch: worker rank {rank} failed first (exit code {first.exitcode}); the other workers "
              "were stopped. Its error is above.", file=sys.stderr)
        return 1
    return 0
