"""Models known to ``pyg-spectral bench``.

Adding a model is a one-file change: drop a module into
:mod:`pyg_spectral.bench.models` that decorates a builder with
:func:`register_model`; every module there is imported on first lookup.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from torch import nn

# (num_features, num_classes, data, **options) -> module whose forward(x, edge_index)
# gives logits; options are the model's own settings (e.g. k), named in its spec
Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Builder
    description: str
    options: tuple[str, ...] = ()


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, description: str,
                   options: tuple[str, ...] = ()) -> Callable[[Builder], Builder]:
    r"""Registers a builder under :obj:`name`; :obj:`options` names the
    keyword arguments it takes beyond :obj:`(num_features, num_classes, data)`
    (e.g. :obj:`('k',)`), so that a sweep passes them only where they apply."""
    def wrap(build: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"A model named {name!r} is already registered.")
        _MODELS[name] = ModelSpec(name, build, description, tuple(options))
        return build

    return wrap


def _discover() -> None:
    from . import models
    for info in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f'{models.__name__}.{info.name}')


def available_models() -> dict[str, ModelSpec]:
    _discover()
    return dict(sorted(_MODELS.items()))


def get_model(name: str) -> ModelSpec:
    models = available_models()
    if name not in models:
        raise ValueError(f"Unknown model={name!r}; registered models are "
                         f"{', '.join(models)}.")
    return models[name]
