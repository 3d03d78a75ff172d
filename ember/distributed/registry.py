"""`get_strategy`: a strategy from its name. Here, above the strategies, so that the base class
(`strategy.py`) never imports its own subclasses."""
from ember.distributed.strategy import SingleProcess


def get_strategy(strategy):
    """A strategy object from None, "single", "ddp", "fsdp" or an instance."""
    from ember.distributed.ddp import DDP  # FSDP's torch modules take seconds to import: only when asked
    from ember.distributed.fsdp import FSDP

    known = {"single": SingleProcess, "ddp": DDP, "fsdp": FSDP}
    if strategy is None:
        return SingleProcess()
    if isinstance(strategy, str):
        if strategy.lower() not in known:
            raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(repr(k) for k in known)}, "
                             "or an instance such as ember.distributed.FSDP(cpu_offload=True)")
        return known[strategy.lower()]()
    if not isinstance(strategy, SingleProcess):
        raise TypeError(f"strategy must be one of {', '.join(repr(k) for k in known)} or an ember.distributed "
                        f"strategy (DDP(), FSDP(...)), got {type(strategy).__name__}")
    return strategy
