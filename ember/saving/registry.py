"""What a model file may name, and how it is rebuilt: registries that the model classes fill themselves.

A model file names its architecture; loading looks the name up here and imports nothing
(docs/security.md). `ember.Model.__init_subclass__` registers every subclass under its class path;
a model whose architecture is data (Sequential: a list of layer configs) registers a config kind.
The registries live here, below `ember.define` and `ember.keras`, so that saving can rebuild their
models without importing them.
"""

# "module.QualName" -> every ember.Model subclass defined in this process.
_MODEL_CLASSES = {}
# architecture kind -> the class saved as its get_config() and rebuilt by its from_config().
_CONFIG_CLASSES = {}


def class_path(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_model_class(cls) -> None:
    """Let model files name `cls` by its class path."""
    _MODEL_CLASSES[class_path(cls)] = cls


def defined_model_class(path: str):
    """The ember.Model subclass defined in this process under `path` ("module.QualName"), or None."""
    return _MODEL_CLASSES.get(path)


def register_config_class(kind: str, cls) -> None:
    """Save instances of `cls` (subclasses included) as `{"kind": kind, "config": model.get_config()}`
    and rebuild them with `cls.from_config(config)`."""
    _CONFIG_CLASSES[kind] = cls


def config_kind_of(model):
    """The config kind `model` is saved as, or None: then it is saved as its class and constructor arguments."""
    return next((kind for kind, cls in _CONFIG_CLASSES.items() if isinstance(model, cls)), None)


def config_class(kind: str):
    """The class that rebuilds architectures of `kind`, or None if none is registered in this process."""
    return _CONFIG_CLASSES.get(kind)


def config_kinds() -> list:
    return sorted(_CONFIG_CLASSES)
