"""Layers, text encoders, model families (registry in models.registry) and losses."""
import os as _os

# Keras 2 (tf-keras) must be chosen before TensorFlow is first imported: under Keras 3 an outer
# model silently tracks none of the transformers TF BERT variables.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's pooling (BFC) allocator for host memory instead of malloc: training asked the kernel
# for fresh pages ~200,000 times a second, a third of the CPU time in page faults (docs/benchmarks.md,
# "Host memory allocator"); the same results, ~1/3 less wall time. Set it to false to opt out.
_os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
