"""Optional exporters' heavy dependencies, imported on use with an error naming the extra to install."""
import importlib


class MissingExtraError(ImportError, RuntimeError):
    """An optional dependency of one export format is not installed (a RuntimeError too, so the CLI reports it)."""


def require(module: str, format: str, extra: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(f"format {format!r} needs the optional extra: pip install 'ember[{extra}]' "
                                f"(could not import {module}: {error})") from error
