"""Training speed of the full pretrain pipeline, beside the rate of its input pipeline alone.

For every model (registry family or ensemble variant) and size preset, a pretrain run is set up
exactly as ``python -m train.pretrain`` does (synthetic data in the official layout, vocabulary
built from its titles, `train.data.TrainStream`, `train.loop.Trainer` with both AdamW, clipping,
MirroredStrategy over all GPUs or the CPU), then:

* ``steps/s``: ``--warmup`` untimed training steps (tracing), then ``--steps`` timed ones, run
  ``steps_per_loop`` at a time (one host round trip each; ``--steps-per-loop 1,10`` compares);
* ``input rec/s``: the same training dataset iterated without the model (decode, tag multi-hot,
  tokenisation), i.e. the most records per second the input pipeline can feed.

    python -m bench.bench_train [--data DIR] [--models baseline,mix,uniter] [--presets tiny,full]
        [--batch-size 8] [--steps 5] [--warmup 2] [--steps-per-loop 1,10]

Without ``--data`` a tiny synthetic data set is generated in a temporary directory.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import tensorflow as tf

from models.config import ModelConfig
from train.config import TrainConfig
from train.pretrain import prepare_pretrain
from train.stage import resolve_model_config

DEFAULT_MODELS = "baseline,mix,mix_asl,mix_roformer,uniter,uniter_asl,uniter_roformer"


def input_rate(stream, batches: int) -> float:
    """Records per second of the training dataset alone (after one warm-up batch)."""
    iterator = iter(stream.dataset(0))
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * stream.global_batch / (time.perf_counter() - start)


def bench_model(name: str, preset: str, data_dir: str, batch_size: int, steps: int, warmup: int,
                steps_per_loop: int = 1) -> dict:
    config = TrainConfig(model=resolve_model_config(name, ModelConfig.preset(preset)), data_dir=data_dir,
                         batch_size=batch_size, max_steps=2 * warmup + steps, progress=False, shuffle_buffer=256,
                         steps_per_loop=steps_per_loop)
    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("GPU")] or ["/cpu:0"])
    with tempfile.TemporaryDirectory() as run_dir:
        setup = prepare_pretrain(config, run_dir, strategy)
        trainer = setup.trainer
        iterator = trainer.iterator(0)
        start = time.perf_counter()
        for _ in range(warmup):  # traces the one-step function, then the loop function
            trainer.train_step(iterator)
        if steps_per_loop > 1:
            trainer.train_steps(iterator, min(warmup, steps_per_loop))
        first = time.perf_counter() - start
        start = time.perf_counter()
        done = 0
        while done < steps:
            done += trainer.train_steps(iterator, min(steps_per_loop, steps - done))[1]
        per_step = (time.perf_counter() - start) / steps
        params = sum(int(tf.size(v)) for v in trainer.model.trainable_variables)
        records = input_rate(setup.stream, batches=20)
    return {"model": name, "preset": preset, "params": params, "batch": batch_size, "loop": steps_per_loop,
            "warmup_s": first,
            "steps_per_s": 1.0 / per_step, "train_records_per_s": batch_size / per_step,
            "input_records_per_s": records}


def format_table(rows: list[dict]) -> str:
    header = (f"{'model':<16} {'preset':<6} {'params':>11} {'batch':>5} {'loop':>4} {'warmup s':>9} {'steps/s':>8} "
              f"{'train rec/s':>11} {'input rec/s':>11}")
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['model']:<16} {row['preset']:<6} {row['params']:>11,} {row['batch']:>5} {row['loop']:>4} "
                     f"{row['warmup_s']:>9.1f} {row['steps_per_s']:>8.2f} {row['train_records_per_s']:>11.1f} "
                     f"{row['input_records_per_s']:>11.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="data directory in the official layout (default: tiny synthetic data)")
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--presets", default="tiny,full")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps-per-loop", default="1", help="comma-separated steps_per_loop values to compare")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data
        if data_dir is None:
            from tfrecord_tools import synth

            data_dir = f"{scratch}/data"
            synth.generate(data_dir, "tiny", seed=0, progress=False)
        rows = []
        for preset in args.presets.split(","):
            for name in args.models.split(","):
                for loop in (int(n) for n in args.steps_per_loop.split(",")):
                    rows.append(bench_model(name, preset, data_dir, args.batch_size, args.steps, args.warmup, loop))
                    print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    print(f"\npretrain step speed on the {device} (train rec/s = batch x steps/s; input rec/s = the same "
          f"dataset without the model)\n" + format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
