"""`dual_tower`: seed team 000's dual-tower model.

The tower is the official baseline's (`models.baseline.BaselineModel`, reused, not copied):
NeXtVLAD over the frames + the text encoder's pooled title vector -> `ConcatDenseSE` -> 256,
a tag head on the embedding; pretraining = the tag loss (BCE by default). Both videos of a pair
go through the same tower ("dual tower" = shared weights); what makes the family is its finetune
recipe, run by the trainer:
  - multi-loss: tag BCE on both videos + MSE + MAE between the pair's cosine and its target,
    TrainConfig ``finetune_losses=tag+mse+mae``;
  - label transform sigmoid(α·score), TrainConfig ``target_transform=sigmoid`` (α is
    ``sigmoid_alpha``);
  - separate optimisers for the text encoder and the rest (the trainer always splits the
    variables by `text_encoder_variables()`).
`FINETUNE_RECIPE` holds those TrainConfig settings.
"""
from __future__ import annotations

from models.baseline import BaselineModel


class DualTowerModel(BaselineModel):
    """The baseline tower under its own family name (finetuned with `FINETUNE_RECIPE`)."""

    FINETUNE_RECIPE = {"finetune_losses": "tag+mse+mae", "target_transform": "sigmoid"}
