"""Keras' `steps_per_epoch` and `validation_steps`: epochs cut from a stream of passes over the data.

Keras 3 keeps one iterator across epochs: an epoch continues where the last one stopped, and when
the data runs out the epoch ends early (with a warning) and the next one starts a new pass. With N
batches a pass and s steps an epoch, a pass is cut into ceil(N / s) epochs, the last one shorter.
`StepsPerEpoch` finds where epoch e starts (which pass, which batch of it) from e alone, so a
resumed run continues exactly, and keeps the running pass between epochs so a loader is not read
again up to where it stood. Data without a length is taken as a stream that does not run out
until it does; it then has N batches a pass (Keras learns N the same way).
"""
import warnings


class StepsPerEpoch:
    def __init__(self, batches, steps: int, what: str):
        if int(steps) != steps or steps < 1:
            raise ValueError(f"{what} must be a positive integer, got {steps!r}")
        self.batches, self.steps, self.what = batches, int(steps), what
        self.pass_length = length_or_none(batches)
        self._running = None  # (pass, batches of it taken, its iterator)

    def __len__(self):
        return self.steps

    def __getattr__(self, name):  # the batches' own attributes: iterable, num_samples, split_across...
        if name == "batches":  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self.batches, name)

    @property
    def num_batches(self):
        return self.steps

    @property
    def seed(self):
        return self.batches.seed

    @seed.setter
    def seed(self, value):
        self.batches.seed = value

    def epoch(self, epoch, start_step=0):
        """The batches of `epoch` from its `start_step`: up to `steps` of them, fewer where a pass runs out."""
        per_pass = -(-self.pass_length // self.steps) if self.pass_length else None
        data_pass, first = (epoch // per_pass, epoch % per_pass * self.steps) if per_pass else (0, epoch * self.steps)
        position = first + start_step
        if self._running is None or self._running[:2] != (data_pass, position):
            self._running = (data_pass, position, iter(self.batches.epoch(data_pass, position)))
        iterator = self._running[2]
        for step in range(start_step, self.steps):
            batch = next(iterator, None)
            if batch is None:  # the pass ran out: this epoch ends here, the next one starts a new pass
                self.pass_length, self._running = first + step, None
                warnings.warn(f"{self.what}={self.steps}: the data ran out after {first + step} batches, so this "
                              f"epoch ends after {step} steps and the next one starts a new pass",
                              RuntimeWarning, stacklevel=2)
                return
            self._running = (data_pass, first + step + 1, iterator)
            yield batch
        if self.pass_length is not None and first + self.steps >= self.pass_length:
            self._running = None  # the pass ended with this epoch


def length_or_none(batches):
    """Batches per pass, or None for a stream without a length (an epoch is then one whole pass)."""
    try:
        return len(batches)
    except TypeError:  # an iterable without a length
        return None
