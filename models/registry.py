"""The one registry of model families: name -> class, and `build_model(config)`.

`MODELS` maps a `ModelConfig.name` to its family class; `register(name)` adds one (a decorator,
e.g. for families defined outside this package). `VARIANTS` names the six models of team 618's
ensemble as (family, config overrides); `variant_config` applies one to a base config.
`finetune_recipe(name)` gives the TrainConfig settings a family's published finetune used
(its class's ``FINETUNE_RECIPE``; empty for families without one).

Families are named here as ``"module:Class"`` and imported on first use, so that the registry's
names (command-line choices) are known without importing TensorFlow; a family added by
`register` (or ``MODELS[name] = cls``) is a class right away.
"""
from __future__ import annotations

import importlib
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Callable, Iterator

from models.config import ModelConfig

if TYPE_CHECKING:
    import tf_keras as keras

    from models.base import VideoSimModel


class _Families(MutableMapping):
    """name -> family class; a ``"module:Class"`` entry is imported when first looked up."""

    def __init__(self, entries: dict[str, "str | type"]):
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> "type[VideoSimModel]":
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return entry

    def __setitem__(self, name: str, cls: "type[VideoSimModel]") -> None:
        self._entries[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


MODELS: MutableMapping[str, "type[VideoSimModel]"] = _Families({
    "baseline": "models.baseline:BaselineModel",
    "mix_nextvlad": "models.mix_nextvlad:MixNeXtVLADModel",
    "uniter": "models.uniter:UniterModel",
    "single_stream": "models.single_stream:SingleStreamModel",
    "dual_tower": "models.dual_tower:DualTowerModel",
    "frame_diff": "models.frame_diff:FrameDiffModel",
    "cross_modal": "models.cross_modal:CrossModalModel",
    "clip": "models.clip:ClipModel",
})

# The six models of the 618 ensemble. "mix_roformer" takes its title vector from RoFormer.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "mix": ("mix_nextvlad", {}),
    "mix_asl": ("mix_nextvlad", {"tag_loss": "asl"}),
    "mix_roformer": ("mix_nextvlad", {"text_encoder": "roformer"}),
    "uniter": ("uniter", {}),
    "uniter_asl": ("uniter", {"tag_loss": "asl"}),
    "uniter_roformer": ("uniter", {"text_encoder": "roformer"}),
}


def register(name: str) -> "Callable[[type[VideoSimModel]], type[VideoSimModel]]":
    """Class decorator adding a family to `MODELS` under ``name`` (a clash is an error)."""
    def decorator(cls: "type[VideoSimModel]") -> "type[VideoSimModel]":
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to "
                             f"{MODELS[name].__name__}")
        if not hasattr(cls, "from_model_config"):
            raise TypeError(f"{cls.__name__} must subclass models.base.VideoSimModel")
        MODELS[name] = cls
        return cls
    return decorator


def build_model(config: ModelConfig, *, build: bool = True) -> "keras.Model":
    """The family ``config.name`` built from ``config``.

    With ``build=True`` (default) the model is called once on a random batch of size 2
    (inference mode, no state changes) so that all its variables exist right away: an
    optimizer, a checkpoint restore or a variable split can follow immediately. Call it inside
    ``strategy.scope()`` to get distributed variables.
    """
    if config.name not in MODELS:
        raise ValueError(f"unknown model name {config.name!r}; available: {sorted(MODELS)}")
    model = MODELS[config.name].from_model_config(config)
    if build:
        from models.base import example_features

        model(example_features(config, batch_size=2), training=False)
    return model


def variant_config(variant: str, base: ModelConfig) -> ModelConfig:
    """``base`` turned into one of the six `VARIANTS` (family name + overrides)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; available: {sorted(VARIANTS)}")
    family, overrides = VARIANTS[variant]
    return base.replace(name=family, **overrides)


def finetune_recipe(name: str) -> dict[str, str]:
    """TrainConfig overrides (e.g. ``{"target_transform": "rank", "finetune_losses": "mse"}``)
    of family ``name``'s published finetune; ``{}`` when the family declares none."""
    if name not in MODELS:
        raise ValueError(f"unknown model name {name!r}; available: {sorted(MODELS)}")
    return dict(getattr(MODELS[name], "FINETUNE_RECIPE", {}))
