"""`ModelConfig`: one flat, JSON-friendly, validated config shared by every model family.

Why one flat config: the trainer writes it as JSON beside every checkpoint and later stages read
it back; `models.registry.build_model` maps it to a family's plain constructor arguments (each
family takes the fields it needs, by name). A new family adds its fields here with defaults, so
old JSON files keep loading.

Text encoder fields (`text_*`) describe a randomly initialised encoder; when
`pretrained_text_dir` is set the architecture comes from that checkpoint instead and only
`vocab_size` is checked against it. `vocab_size` and the special token ids are set by the trainer
from the tokenizer.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from tfrecord_tools import schema

TEXT_ENCODERS = ("bert", "roformer")
TAG_LOSSES = ("bce", "asl")
TEXT_SOURCES = ("title", "title+asr")  # as tfrecord_tools.tokenization.TEXT_SOURCES
FRAME_NORMALIZATIONS = ("none", "standardize", "zca")
TAG_REDUCTIONS = ("sum", "mean")

# Special ids of the Chinese BERT vocabulary (hfl/chinese-roberta-wwm-ext, bert-base-chinese):
# [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103. The trainer replaces them with the ids
# of the tokenizer actually used.
_BERT_SPECIAL_IDS = (0, 100, 101, 102, 103)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Every model family's hyper-parameters; see the module docstring."""

    # which family (key of models.registry.MODELS)
    name: str = "baseline"

    # text encoder
    text_encoder: str = "bert"  # "bert" | "roformer"
    pretrained_text_dir: str | None = None  # local transformers checkpoint directory
    vocab_size: int = 21128
    pad_token_id: int = 0
    mask_token_id: int = 103
    special_token_ids: tuple[int, ...] = _BERT_SPECIAL_IDS  # never masked by MLM
    text_hidden_size: int = 768
    text_num_layers: int = 12
    text_num_heads: int = 12
    text_intermediate_size: int = 3072
    text_max_position: int = 512  # uniter needs >= title_len + max_frames

    # input sizes (official layout); title_len counts the tokens of the whole text input
    frame_dim: int = schema.FRAME_DIM
    max_frames: int = schema.MAX_FRAMES
    title_len: int = schema.TITLE_LEN
    num_tags: int = schema.NUM_TAGS
    embedding_dim: int = schema.EMBEDDING_DIM

    # the robust recipe: what the text tokens hold ("title" or "title+asr": the ASR text follows
    # the title as a second segment, the longer of the two cut first), and how frames are
    # normalised in-graph with statistics of the training data (models.layers.FrameStandardizer:
    # "none", "standardize" per feature, or "zca": whitening of the between-video covariance with
    # the frame_whiten_rank-th eigenvalue as shrinkage)
    text_source: str = "title"
    frame_normalization: str = "none"
    frame_whiten_rank: int = 64

    # dropout of fusion layers and of a randomly initialised text encoder
    dropout: float = 0.1

    # NeXtVLAD (official defaults) and fusion
    nextvlad_cluster_size: int = 64
    nextvlad_groups: int = 8
    nextvlad_expansion: int = 2
    nextvlad_dropout: float = 0.2
    nextvlad_output_size: int = 1024
    se_reduction: int = 8
    num_experts: int = 3

    # single_stream (1st place): video embeddings and masked-frame modelling
    mfm_probability: float = 0.15  # share of real frames zeroed and predicted
    mfm_temperature: float = 1.0  # masked-frame NCE: logits = prediction · frame / this

    # cross_modal: transformer video encoder and cross-modal fusion
    video_hidden_size: int = 512
    video_num_layers: int = 2
    video_num_heads: int = 8
    video_intermediate_size: int = 2048
    fusion_num_layers: int = 1

    # losses
    tag_loss: str = "bce"  # "bce" | "asl"
    tag_reduction: str = "sum"  # over tags ("sum" | "mean"); always mean over the batch
    tag_prior_positives: float = 5.0  # tag-head bias starts at logit(this / num_tags); 0: zeros
    asl_gamma_neg: float = 1.0
    asl_gamma_pos: float = 0.0
    asl_margin: float = 0.0
    kl_temperature: float = 2.0
    infonce_temperature: float = 0.07
    mlm_probability: float = 0.15

    # pretraining loss weights
    tag_weight: float = 1.0
    expert_tag_weight: float = 1.0
    kl_weight: float = 1.0
    infonce_weight: float = 1.0
    mlm_weight: float = 1.0
    # single_stream weights, published values (1st place: tag x 1250/3, MLM / 3.75, MFM / 9).
    # The tag weight is on the scale of a tag loss *averaged* over tags (as published); with
    # tag_reduction="sum" the model divides it by num_tags, so the effective loss is the same.
    single_stream_tag_weight: float = 1250.0 / 3.0
    single_stream_mlm_weight: float = 1.0 / 3.75
    single_stream_mfm_weight: float = 1.0 / 9.0
    # cross_modal: InfoNCE between pooled video and pooled text before fusion (0 disables it)
    cross_modal_infonce_weight: float = 0.1

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _coerce(field, getattr(self, field.name)))
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    def _problems(self):
        if not self.name:
            yield "name must be a non-empty registry key"
        if self.text_encoder not in TEXT_ENCODERS:
            yield f"text_encoder must be one of {TEXT_ENCODERS}, got {self.text_encoder!r}"
        if self.frame_normalization not in FRAME_NORMALIZATIONS:
            yield f"frame_normalization must be one of {FRAME_NORMALIZATIONS}, got {self.frame_normalization!r}"
        if self.text_source not in TEXT_SOURCES:
            yield f"text_source must be one of {TEXT_SOURCES}, got {self.text_source!r}"
        if self.tag_loss not in TAG_LOSSES:
            yield f"tag_loss must be one of {TAG_LOSSES}, got {self.tag_loss!r}"
        if self.tag_reduction not in TAG_REDUCTIONS:
            yield f"tag_reduction must be one of {TAG_REDUCTIONS}, got {self.tag_reduction!r}"
        if self.pretrained_text_dir is not None and not self.pretrained_text_dir:
            yield "pretrained_text_dir must be None or a directory path, got ''"
        positive = (
            "vocab_size", "text_hidden_size", "text_num_layers", "text_num_heads",
            "text_intermediate_size", "text_max_position", "frame_dim", "max_frames", "title_len",
            "num_tags", "embedding_dim", "nextvlad_cluster_size", "nextvlad_groups",
            "nextvlad_expansion", "nextvlad_output_size", "se_reduction", "num_experts",
            "kl_temperature", "infonce_temperature", "mfm_temperature", "video_hidden_size",
            "video_num_layers", "video_num_heads", "video_intermediate_size", "fusion_num_layers",
            "frame_whiten_rank",
        )
        for key in positive:
            if getattr(self, key) <= 0:
                yield f"{key} must be > 0, got {getattr(self, key)}"
        non_negative = (
            "tag_prior_positives", "asl_gamma_neg", "asl_gamma_pos", "asl_margin", "tag_weight",
            "expert_tag_weight", "kl_weight", "infonce_weight", "mlm_weight",
            "single_stream_tag_weight", "single_stream_mlm_weight", "single_stream_mfm_weight",
            "cross_modal_infonce_weight",
        )
        for key in non_negative:
            if getattr(self, key) < 0:
                yield f"{key} must be >= 0, got {getattr(self, key)}"
        for key in ("dropout", "nextvlad_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                yield f"{key} must be in [0, 1), got {getattr(self, key)}"
        for key in ("mlm_probability", "mfm_probability"):
            if not 0.0 < getattr(self, key) < 1.0:
                yield f"{key} must be in (0, 1), got {getattr(self, key)}"
        if self.video_hidden_size % max(self.video_num_heads, 1):
            yield (f"video_hidden_size ({self.video_hidden_size}) must be divisible by "
                   f"video_num_heads ({self.video_num_heads})")
        if not 0.0 <= self.asl_margin < 1.0:
            yield f"asl_margin must be in [0, 1), got {self.asl_margin}"
        if self.tag_prior_positives >= self.num_tags:
            yield (f"tag_prior_positives ({self.tag_prior_positives}) must be < num_tags "
                   f"({self.num_tags})")
        if self.text_hidden_size % max(self.text_num_heads, 1):
            yield (f"text_hidden_size ({self.text_hidden_size}) must be divisible by "
                   f"text_num_heads ({self.text_num_heads})")
        if self.text_max_position < self.title_len:
            yield (f"text_max_position ({self.text_max_position}) must be >= title_len "
                   f"({self.title_len})")
        if (self.frame_dim * self.nextvlad_expansion) % max(self.nextvlad_groups, 1):
            yield (f"frame_dim * nextvlad_expansion ({self.frame_dim * self.nextvlad_expansion}) "
                   f"must be divisible by nextvlad_groups ({self.nextvlad_groups})")
        token_ids = {"pad_token_id": self.pad_token_id, "mask_token_id": self.mask_token_id}
        token_ids.update({f"special_token_ids[{i}]": v for i, v in enumerate(self.special_token_ids)})
        for key, value in token_ids.items():
            if not 0 <= value < self.vocab_size:
                yield f"{key} must be in [0, vocab_size={self.vocab_size}), got {value}"
        if self.mask_token_id not in self.special_token_ids:
            yield f"mask_token_id ({self.mask_token_id}) must be one of special_token_ids"

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["special_token_ids"] = list(self.special_token_ids)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        """Inverse of `to_dict`; unknown keys are an error naming them and the valid keys."""
        if not isinstance(data, Mapping):
            raise TypeError(f"ModelConfig.from_dict expects a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with ``changes`` applied (validated again); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig key(s) {unknown}; valid keys: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, preset: str, name: str = "baseline", **overrides: Any) -> "ModelConfig":
        """Named size preset (see `PRESETS`) for family ``name``, then ``overrides``."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; available: {sorted(PRESETS)}")
        return cls(name=name, **PRESETS[preset]).replace(**overrides)

    @classmethod
    def tiny(cls, name: str = "baseline", **overrides: Any) -> "ModelConfig":
        """Smallest sensible sizes, for unit tests (keeps frame_dim/num_tags unless overridden)."""
        return cls.preset("tiny", name, **overrides)

    @classmethod
    def small(cls, name: str = "baseline", **overrides: Any) -> "ModelConfig":
        """Official-size NeXtVLAD/fusion with a 2-layer, 128-wide text encoder (CPU demo)."""
        return cls.preset("small", name, **overrides)


# Size presets. "full" is the dataclass default: official NeXtVLAD and a BERT-base sized
# (12 layers, 768 wide) text encoder, the size of hfl/chinese-roberta-wwm-ext.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        text_hidden_size=32, text_num_layers=1, text_num_heads=2, text_intermediate_size=64,
        text_max_position=128, nextvlad_cluster_size=8, nextvlad_groups=2,
        nextvlad_expansion=2, nextvlad_output_size=64, vocab_size=128, pad_token_id=0,
        mask_token_id=4, special_token_ids=(0, 1, 2, 3, 4),
        video_hidden_size=32, video_num_layers=1, video_num_heads=2, video_intermediate_size=64,
    ),
    "small": dict(
        text_hidden_size=128, text_num_layers=2, text_num_heads=2, text_intermediate_size=512,
        text_max_position=128, video_hidden_size=128, video_num_heads=2,
        video_intermediate_size=512,
    ),
    "full": dict(),
    # BERT-large shaped text encoder (24 layers, 1024 wide; e.g. a local
    # hfl/chinese-roberta-wwm-ext-large), the 1st place's single_stream size
    "large": dict(
        text_hidden_size=1024, text_num_layers=24, text_num_heads=16,
        text_intermediate_size=4096,
    ),
}


def _coerce(field: dataclasses.Field, value: Any) -> Any:
    """Check a field's type from its annotation; ints become floats, lists become tuples."""
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    where = f"ModelConfig.{field.name}"
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string, got {value!r}")
    elif kind == "str | None":
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{where} must be a string or None, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where} must be an integer, got {value!r}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where} must be a number, got {value!r}")
        return float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be true or false, got {value!r}")
    elif kind == "tuple[int, ...]":
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise TypeError(f"{where} must be a list of integers, got {value!r}")
        value = tuple(value)
        if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise TypeError(f"{where} must be a list of integers, got {list(value)!r}")
    return value
