"""Record the arguments an object was constructed with, so it can be rebuilt from JSON.

`ember.Model` subclasses and ember layers both use it: `save()` stores the recorded
arguments and `ember.load()` calls the constructor again, never unpickling anything.
"""
import functools
import inspect


def record_init_arguments(cls) -> None:
    """Wrap `cls.__init__` so the outermost constructor call stores its bound arguments,
    then calls `self.post_init()` if the class has one (layers build there)."""
    init = cls.__dict__.get("__init__")
    if init is None or getattr(init, "_records_arguments", False):
        return
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        outermost = "_init_arguments" not in self.__dict__
        if outermost:
            # Set before calling init so the nested super().__init__ calls record nothing.
            object.__setattr__(self, "_init_arguments", None)
        init(self, *args, **kwargs)
        if outermost:
            bound = signature.bind(self, *args, **kwargs)
            arguments = dict(bound.arguments)
            arguments.pop(next(iter(signature.parameters)))  # self
            for name, param in signature.parameters.items():
                if param.kind is inspect.Parameter.VAR_KEYWORD and name in arguments:
                    arguments.update(arguments.pop(name))
            object.__setattr__(self, "_init_arguments", arguments)
            post_init = getattr(self, "post_init", None)
            if post_init is not None:
                post_init()

    __init__._records_arguments = True
    cls.__init__ = __init__
