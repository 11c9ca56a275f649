"""Embedding videos that are not in an index (and text queries) with the model that built it.

An encoder is a trained run directory (``infer.embed.load_run``) or a SavedModel export
(``python -m infer.export`` / ``ensemble_final.py --export``). Each has a *fingerprint* (a hash of
its weights, see ``infer.export.run_fingerprint``) and an *output* (``embedding``, or a family's
tower such as mix_nextvlad's ``video_embedding``); an index built from that encoder records both in
its meta.json, and a query refuses an encoder whose fingerprint or output differs.

Text queries need a family whose text and video towers are trained into one space:
``TEXT_TOWERS`` maps the video output an index holds to the text output that queries it.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from search.store import SearchError, SearchIndex

# video output of a family -> the text output aligned with it (mix_nextvlad: symmetric InfoNCE)
TEXT_TOWERS = {"video_embedding": "text_embedding"}


def is_export(path: str) -> bool:
    from infer.export import EXPORT_META

    return os.path.isfile(os.path.join(path, EXPORT_META))


class Encoder:
    """Base: ``model`` (fingerprint/output/source), ``embed_records(files)``, ``embed_text(texts)``."""

    model: dict

    def check_index(self, index: SearchIndex, for_text: bool = False) -> None:
        """SearchError unless ``index`` was built from this encoder's output (or, for text, its video tower)."""
        built = index.meta.get("model")
        if not built or not built.get("fingerprint"):
            raise SearchError(f"{index.path}: the index does not record which model made its vectors (built from "
                              f"{index.meta['source']['path']} without --run); rebuild it with --run to query "
                              f"new videos or text")
        if built["fingerprint"] != self.model["fingerprint"]:
            raise SearchError(f"{index.path}: index built from another model ({built.get('source')}, fingerprint "
                              f"{built['fingerprint']}) than {self.model['source']} (fingerprint "
                              f"{self.model['fingerprint']})")
        if for_text:
            if built.get("output") not in TEXT_TOWERS:
                raise SearchError(f"{index.path}: the index holds {built.get('output')!r} vectors, not a video tower "
                                  f"aligned with text (build it with --output "
                                  f"{' or '.join(TEXT_TOWERS)} from a mix_nextvlad run)")
        elif built.get("output") != self.model["output"]:
            raise SearchError(f"{index.path}: index holds the model's {built.get('output')!r} vectors, the query "
                              f"embeds {self.model['output']!r}")


class RunEncoder(Encoder):
    """A run directory's model; ``output`` picks which of the model's outputs is the vector."""

    def __init__(self, run_dir: str, output: str = "embedding", checkpoint: str = "best"):
        import tensorflow as tf

        from infer.embed import load_run
        from infer.export import run_fingerprint

        self.run = load_run(run_dir, checkpoint)
        self.output = output
        model = self.run.model
        self._fn = tf.function(reduce_retracing=True)(lambda f: model(f, training=False))
        outputs = self._outputs_of_example()
        if output not in outputs:
            raise SearchError(f"{run_dir}: model {self.run.config.model.name!r} has no output {output!r} "
                              f"(outputs: {', '.join(sorted(outputs))})")
        self.model = {"fingerprint": run_fingerprint(self.run.checkpoint), "output": output,
                      "source": os.path.abspath(run_dir), "family": self.run.config.model.name}

    def _outputs_of_example(self) -> set:
        from models.base import example_features
        from train.data import numeric_features

        return set(self._fn(numeric_features(example_features(self.run.config.model, 1))))

    def embed_records(self, files: Sequence[str], kind: str = "test", batch_size: int = 64
                      ) -> tuple[np.ndarray, np.ndarray]:
        from infer.export import embed_output

        return embed_output(self.run, files, self.output, kind, batch_size)

    def embed_text(self, texts: Sequence[str], video_output: str) -> np.ndarray:
        """The text tower's vectors of ``texts`` (the frames the model also reads are one zero frame)."""
        import tensorflow as tf

        from tfrecord_tools.tokenization import encode_titles

        text_output = TEXT_TOWERS.get(video_output)
        config = self.run.config.model
        if text_output is None or text_output not in self._outputs_of_example():
            raise SearchError(f"{self.model['source']}: model {config.name!r} has no text tower aligned with "
                              f"{video_output!r} (text queries need a mix_nextvlad run)")
        input_ids, attention_mask = encode_titles(self.run.decoder.tokenizer, list(texts), config.title_len)
        n = len(texts)
        mask = np.zeros((n, config.max_frames), np.float32)
        mask[:, 0] = 1.0
        features = {"frames": tf.zeros((n, config.max_frames, config.frame_dim), tf.float32),
                    "frame_mask": tf.constant(mask), "num_frames": tf.ones((n,), tf.int32),
                    "input_ids": tf.constant(input_ids), "attention_mask": tf.constant(attention_mask)}
        return self._fn(features)[text_output].numpy().astype(np.float32)


class ExportEncoder(Encoder):
    """A SavedModel export: records go through its serialized tf.Example signature."""

    def __init__(self, export_dir: str):
        from infer.export import load_export_meta

        import tensorflow as tf

        self.meta = load_export_meta(export_dir)
        self.model = {"fingerprint": self.meta["fingerprint"], "output": self.meta["output"],
                      "source": os.path.abspath(export_dir), "family": self.meta.get("family")}
        if self.meta.get("needs_tensorflow_text"):
            import tensorflow_text  # noqa: F401  (registers the tokenizer ops)
        self.loaded = tf.saved_model.load(export_dir)

    def embed_records(self, files: Sequence[str], kind: str = "test", batch_size: int = 64
                      ) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        if "serving_default" not in self.loaded.signatures:
            raise SearchError(f"{self.model['source']}: this export has no tf.Example signature "
                              f"(its tokenizer cannot run in the graph); embed with --run RUN_DIR instead")
        signature = self.loaded.signatures["serving_default"]
        ids, chunks = [], []
        for batch in tf.data.TFRecordDataset(list(files)).batch(batch_size):
            out = signature(examples=batch)
            ids.append(out["id"].numpy().astype(str))
            chunks.append(out["embedding"].numpy().astype(np.float32))
        if not chunks:
            raise SearchError(f"{', '.join(files)}: no records to embed")
        return np.concatenate(ids), np.concatenate(chunks)

    def embed_text(self, texts: Sequence[str], video_output: str) -> np.ndarray:
        import tensorflow as tf

        if "embed_text" not in self.loaded.signatures:
            raise SearchError(f"{self.model['source']}: this export has no text tower (embed_text signature)")
        return self.loaded.signatures["embed_text"](title=tf.constant(list(texts)))["embedding"].numpy()


def open_encoder(path: str, output: str = "embedding", checkpoint: str = "best") -> Encoder:
    """A RunEncoder for a run directory, an ExportEncoder for an export directory."""
    if not os.path.isdir(path):
        raise SearchError(f"{path}: no such run or export directory")
    if is_export(path):
        return ExportEncoder(path)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise SearchError(f"{path}: neither a run directory (config.json) nor an export (videosim_export.json)")
    return RunEncoder(path, output, checkpoint)
