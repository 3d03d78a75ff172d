"""Slurm's compressed host lists (`node[01-04,07]`) and the rendezvous port of a Slurm job."""
import re

_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


def expand_hostlist(hostlist: str) -> list[str]:
    """The host names in a Slurm host list, in order: `node[01-03,07],gpu-b3` gives node01,
    node02, node03, node07, gpu-b3. Zero padding is kept (its width is the range's first
    number's); several bracket groups in one name expand left to right (`rack[1-2]-node[01-02]`)."""
    hosts = []
    for pattern in _top_level_items(hostlist):
        hosts += _expand(pattern, hostlist)
    return hosts


def _top_level_items(hostlist: str) -> list[str]:
    """Split on the commas outside brackets (the ones inside separate ranges)."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(hostlist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth not in (0, 1):
            break
        if char == "," and depth == 0:
            items.append(hostlist[start:i].strip())
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced brackets in the Slurm host list {hostlist!r}")
    items.append(hostlist[start:].strip())
    if not all(items):
        raise ValueError(f"an empty host name in the Slurm host list {hostlist!r}")
    return items


def _expand(pattern: str, hostlist: str) -> list[str]:
    group = _BRACKETS.search(pattern)
    if group is None:
        return [pattern]
    head, tail = pattern[:group.start()], _expand(pattern[group.end():], hostlist)
    return [head + number + rest for number in _numbers(group.group(1), hostlist) for rest in tail]


def _numbers(ranges: str, hostlist: str) -> list[str]:
    numbers = []
    for item in ranges.split(","):
        low, dash, high = item.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()) or (dash and int(high) < int(low)):
            raise ValueError(f"bad range {item!r} in the Slurm host list {hostlist!r}")
        span = range(int(low), int(high) + 1) if dash else [int(low)]
        numbers += [str(n).zfill(len(low)) for n in span]
    return numbers


def rendezvous_port(job_id: int) -> int:
    """A port for rank 0's store that every task of the job computes alike: in 10000-29999,
    below Linux's ephemeral range (32768-60999), so it seldom collides with clients' ports."""
    return 10000 + job_id % 20000
