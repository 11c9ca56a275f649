"""Pretraining step speed of each model family: train steps/s at a given size preset and batch.

Each family is built from `ModelConfig.preset(preset, family)` inside a MirroredStrategy (all
GPUs, or the CPU), then a compiled step (forward, `pretrain_losses`, gradients, Adam) runs on a
fixed random batch: ``--warmup`` untimed steps (tracing), then ``--steps`` timed ones.

    python -m bench.bench_models --preset small [--batch-size 32] [--steps 10]
        [--families baseline,mix_nextvlad,uniter,uniter:roformer,single_stream,...]
        [--text-layers N] [--mixed-precision]
"""
from __future__ import annotations

import argparse
import time

import tensorflow as tf
import tf_keras as keras

from models.base import example_features
from models.config import PRESETS, ModelConfig
from models.registry import build_model

DEFAULT_FAMILIES = ("baseline,mix_nextvlad,mix_nextvlad:roformer,uniter,uniter:roformer,"
                    "single_stream,single_stream:roformer,dual_tower,frame_diff,cross_modal")


def make_step(model, strategy, optimizer):
    @tf.function
    def step(features):
        def replica_step(features):
            with tf.GradientTape() as tape:
                losses = model.pretrain_losses(features, training=True)
                total = tf.add_n(list(losses.values())) / strategy.num_replicas_in_sync
            grads = tape.gradient(total, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return total
        return strategy.reduce(tf.distribute.ReduceOp.SUM,
                               strategy.run(replica_step, args=(features,)), axis=None)
    return step


def bench_family(family: str, preset: str, batch_size: int, steps: int, warmup: int,
                 overrides: dict) -> dict:
    name, _, encoder = family.partition(":")
    config = ModelConfig.preset(preset, name, text_encoder=encoder or "bert", **overrides)
    strategy = tf.distribute.MirroredStrategy()
    with strategy.scope():
        model = build_model(config)
        optimizer = keras.optimizers.Adam(1e-4)
    step = make_step(model, strategy, optimizer)
    features = example_features(config, batch_size)
    start = time.perf_counter()
    for _ in range(warmup):
        float(step(features))
    traced = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = float(step(features))
    elapsed = time.perf_counter() - start
    params = sum(int(tf.size(v)) for v in model.trainable_variables)
    return dict(family=family, preset=preset, batch=batch_size, params=params,
                steps_per_s=steps / elapsed, warmup_s=traced, loss=loss)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--families", default=DEFAULT_FAMILIES)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--text-layers", type=int, default=None,
                        help="override text_num_layers of the preset")
    parser.add_argument("--mixed-precision", action="store_true")
    args = parser.parse_args(argv)
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    overrides = {} if args.text_layers is None else {"text_num_layers": args.text_layers}
    print(f"{'family':<24}{'preset':<8}{'batch':>6}{'params':>12}{'steps/s':>10}{'warmup s':>10}")
    for family in args.families.split(","):
        row = bench_family(family, args.preset, args.batch_size, args.steps, args.warmup, overrides)
        print(f"{row['family']:<24}{row['preset']:<8}{row['batch']:>6}{row['params']:>12,}"
              f"{row['steps_per_s']:>10.2f}{row['warmup_s']:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
