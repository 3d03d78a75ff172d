"""No argument of ember's public API is accepted and then silently ignored: every parameter of every
public function, method and constructor is read somewhere in its body (passed on, checked or used)."""
import ast
import inspect
import textwrap

import ember
from ember.define.model import Model
from ember.train.trainer import Trainer


def _public_callables():
    found = {}
    for name in ember.__all__:
        value = getattr(ember, name)
        if inspect.ismodule(value):
            for attribute in getattr(value, "__all__", []):
                found[f"ember.{name}.{attribute}"] = getattr(value, attribute)
        else:
            found[f"ember.{name}"] = value
    for owner in (Model, Trainer):
        for name, member in vars(owner).items():
            if inspect.isfunction(member) and not name.startswith("_"):
                found[f"{owner.__name__}.{name}"] = member
    from ember import deploy

    for name in deploy.__all__:
        found[f"ember.deploy.{name}"] = getattr(deploy, name)
    return found


def _functions(value):
    """The function(s) whose parameters a user passes: a function itself, or a class's own __init__."""
    if inspect.isclass(value):
        init = value.__dict__.get("__init__")
        return [inspect.unwrap(init)] if inspect.isfunction(init) else []
    return [inspect.unwrap(value)] if inspect.isfunction(value) else []


def _unread_parameters(function):
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return []
    node = ast.parse(source).body[0]
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return []
    arguments = node.args
    names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
    names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
    read = {n.id for statement in node.body for n in ast.walk(statement) if isinstance(n, ast.Name)}
    uses_locals = "locals" in read or "vars" in read
    return [name for name in names if name not in ("self", "cls") and name not in read and not uses_locals]


def test_no_public_argument_is_silently_ignored():
    problems = {}
    for qualified, value in sorted(_public_callables().items()):
        for function in _functions(value):
            unread = _unread_parameters(function)
            if unread:
                problems[qualified] = unread
    assert problems == {}, f"accepted but never read: {problems}"


def test_the_walk_sees_an_ignored_argument():
    def ignores(x, verbose=0):
        return x

    assert _unread_parameters(ignores) == ["verbose"]
