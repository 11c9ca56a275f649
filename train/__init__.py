"""Configs, tf.distribute strategy, optimizers, pretrain and finetune loops, checkpoints."""
import os as _os

# Keras 2 (tf-keras) must be chosen before TensorFlow is first imported: under Keras 3 an outer
# model silently tracks none of the transformers TF BERT variables.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
