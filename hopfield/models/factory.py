"""Block factories named by the user: ``package.module:function`` or ``path/to/file.py:function``.

A model built from a factory records the factory's qualified name (:func:`factory_name`); a
saved model is rebuilt only from a factory the user names again, never by importing the recorded
name (docs/concepts/fast_layers.md#classic-blocks). :func:`import_factory` is the one place
that imports user-named code, on the user's explicit request.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["factory_name", "import_factory"]


def factory_name(factory: Callable) -> str:
    """``"module:qualname"`` of a factory; a function of a script run as ``__main__`` or loaded
    from a file path is named by the file's stem, so both ways of loading give one name."""
    module = getattr(factory, "__module__", None) or "?"
    qualname = getattr(factory, "__qualname__", None) or type(factory).__qualname__
    if module == "__main__":
        main = getattr(sys.modules.get("__main__"), "__file__", None)
        module = Path(main).stem if main else module
    return f"{module}:{qualname}"


def _load_file(path: Path, spec: str):
    if not path.is_file():
        raise FileNotFoundError(f"load_factory({spec!r}): no file {str(path)!r}; give "
                                f"'path/to/file.py:function' relative to the working folder.")
    name = path.stem
    known = sys.modules.get(name)
    known_file = getattr(known, "__file__", None)
    if known is not None and (not known_file or Path(known_file).resolve() != path.resolve()):
        raise ValueError(f"load_factory({spec!r}): a module named {name!r} is already imported "
                         f"from elsewhere ({known_file or 'built in'}); rename {path.name}.")
    loader_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up by name
    try:
        loader_spec.loader.exec_module(module)
    except SyntaxError as err:
        sys.modules.pop(name, None)
        raise ValueError(f"load_factory({spec!r}): {path} has a syntax error at line "
                         f"{err.lineno}: {err.msg}.") from None
    except Exception as err:
        sys.modules.pop(name, None)
        raise ValueError(f"load_factory({spec!r}): importing {path} failed: "
                         f"{type(err).__name__}: {err}") from None
    return module


def import_factory(spec: str) -> Callable:
    """Import the callable ``spec`` names: ``"package.module:function"`` (an importable module)
    or ``"path/to/file.py:function"`` (a file, loaded as a module named by its stem).

    Raises:
        ValueError: a malformed spec, an unimportable module, a file with a syntax error.
        FileNotFoundError: no such file. TypeError: the attribute is not callable.
    """
    if not isinstance(spec, str):
        raise TypeError(f"load_factory: expected a string 'module:function' or "
                        f"'file.py:function', got {type(spec).__name__}.")
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise ValueError(f"load_factory({spec!r}): expected 'package.module:function' or "
                         f"'path/to/file.py:function'.")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _load_file(Path(where), spec)
    else:
        try:
            module = importlib.import_module(where)
        except SyntaxError as err:
            raise ValueError(f"load_factory({spec!r}): module {where!r} has a syntax error at "
                             f"line {err.lineno} of {err.filename}: {err.msg}.") from None
        except ImportError as err:
            raise ValueError(f"load_factory({spec!r}): cannot import module {where!r} ({err}); "
                             f"for a file give its path ending in .py.") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items()
                           if callable(v) and not n.startswith("_"))
            raise ValueError(f"load_factory({spec!r}): {where} has no attribute {attr!r}; its "
                             f"callables: {', '.join(names) or 'none'}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"load_factory({spec!r}): {attr!r} is a {type(obj).__name__}, not a "
                        f"callable block factory (called as factory(num_tokens=..., dim=..., "
                        f"**kwargs)).")
    return obj
