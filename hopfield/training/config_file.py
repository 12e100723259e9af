"""Training settings from a TOML file (``hopfield train --config run.toml``).

The file's keys are :class:`~hopfield.training.config.TrainConfig` field names (``batch-size``
and ``batch_size`` alike); ``model_kwargs`` is a table. TOML has no null: ``clip_grad = 0``
turns clipping off, as ``--clip-grad 0`` does. Every problem (unreadable file, bad TOML, unknown
key, wrong type) is one :class:`ValueError` naming the file and the key.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.toml"
    >>> _ = path.write_text('epochs = 3\\nbatch-size = 64\\n[model_kwargs]\\ndepth = 1\\n')
    >>> load_config_file(path)
    {'epochs': 3, 'batch_size': 64, 'model_kwargs': {'depth': 1}}
"""

from __future__ import annotations

import os
from dataclasses import fields

from .config import TrainConfig

__all__ = ["load_config_file"]

_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,)}
_NAMES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
          "dict": "a table"}


def _toml():
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ImportError("reading a --config TOML file needs Python >= 3.11 or the tomli "
                              "package (pip install tomli).") from None
    return tomllib


def load_config_file(path: str | os.PathLike) -> dict:
    """The settings of a TOML file as ``{field: value}``, checked against :class:`TrainConfig`.

    Raises:
        ValueError: unreadable or invalid file, unknown key or wrong type (file and key named).
        ImportError: Python 3.10 without ``tomli``.
    """
    tomllib = _toml()
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as err:
        raise ValueError(f"{path}: cannot read the config file ({err.strerror or err}).") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err}).") from None
    kinds = {f.name: str(f.type).replace(" ", "").split("|")[0] for f in fields(TrainConfig)}
    out = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in kinds:
            raise ValueError(f"{path}: unknown key {key!r}; valid keys are the TrainConfig "
                             f"fields: {', '.join(kinds)}.")
        kind = kinds[name]
        ok = isinstance(value, _TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))
        if not ok:
            raise ValueError(f"{path}: {key} must be {_NAMES[kind]}, got {value!r}.")
        if name == "clip_grad" and value == 0:
            value = None  # as --clip-grad 0: no clipping
        if name == "model_kwargs":
            value = {k.replace("-", "_"): v for k, v in value.items()}
        out[name] = value
    return out
