"""`ModelConfig`: every model family's hyper-parameters, nested by what they describe.

    ModelConfig
      name, frame_dim, max_frames, title_len, num_tags, embedding_dim, dropout, infonce_temperature
      text           TextEncoderConfig   the text encoder (BERT / RoFormer), its tokens and their source
      frames         FramesConfig        in-graph frame normalisation (standardise / ZCA whitening)
      wide           WideConfig          the frozen linear-metric ("wide") path added to the embedding
      tags           TagLossConfig       the tag head and its loss (BCE / ASL), its pretraining weight
      nextvlad       NeXtVLADConfig      baseline, dual_tower, frame_diff, mix_nextvlad
      mix_nextvlad   MixNeXtVLADConfig
      uniter         UniterConfig
      single_stream  SingleStreamConfig
      cross_modal    CrossModalConfig

The trainer writes it as JSON beside every checkpoint (nested) and later stages read it back.
A family is built from the whole config (`models.base.VideoSimModel`) and reads the sections it
needs. A new section is a frozen dataclass here plus one field of `ModelConfig`; a new field of
a section needs a default, so that older JSON keeps loading.

Flat keys. Configs were flat before (``text_num_layers``, ``tag_loss``, ...); `LEGACY_KEYS` maps
every flat name to its place, so old ``config.json`` files load, ``model.text_num_layers=2``
overrides keep working, ``ModelConfig(tag_loss="asl")`` / ``.replace(text_encoder="roformer")``
still work, and ``config.vocab_size`` reads ``config.text.vocab_size``.

Text encoder fields describe a randomly initialised encoder; when ``text.pretrained_dir`` is set
the architecture comes from that checkpoint instead and only ``vocab_size`` is checked against
it. ``vocab_size`` and the special token ids are set by the trainer from the tokenizer.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import Any, Iterable, Mapping

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


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class _Section:
    """Validation, (de)serialisation and `replace` shared by `ModelConfig` and its sections."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(hints[field.name], type) and issubclass(hints[field.name], _Section):
                if isinstance(value, Mapping):
                    value = hints[field.name].from_dict(value)
                if not isinstance(value, hints[field.name]):
                    raise TypeError(f"{self._where(field.name)} must be a {hints[field.name].__name__}, got {value!r}")
                object.__setattr__(self, field.name, value)
            else:
                object.__setattr__(self, field.name, _coerce(self._where(field.name), hints[field.name], value))
        problems = list(self._problems())
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def _where(self, name: str) -> str:
        return f"{type(self).__name__}.{name}"

    def _problems(self) -> Iterable[str]:
        return ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (sections nested, tuples as lists)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = (value.to_dict() if isinstance(value, _Section)
                               else list(value) if isinstance(value, tuple) else value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Inverse of `to_dict`; unknown keys are an error naming them and the valid keys."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict expects a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**dict(data))

    def replace(self, **changes: Any):
        """A validated copy with ``changes``; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} key(s) {unknown}; valid keys: {sorted(known)}")
        return dataclasses.replace(self, **changes)


def _positive(section: Any, keys: Iterable[str]) -> Iterable[str]:
    for key in keys:
        if not getattr(section, key) > 0:
            yield f"{key} must be > 0, got {getattr(section, key)}"


def _non_negative(section: Any, keys: Iterable[str]) -> Iterable[str]:
    for key in keys:
        if getattr(section, key) < 0:
            yield f"{key} must be >= 0, got {getattr(section, key)}"


def _fraction(section: Any, key: str, low_open: bool = False) -> Iterable[str]:
    value = getattr(section, key)
    if not ((0.0 < value) if low_open else (0.0 <= value)) or not value < 1.0:
        yield f"{key} must be in {'(0' if low_open else '[0'}, 1), got {value}"


# ---------------------------------------------------------------------- sections
@dataclasses.dataclass(frozen=True)
class TextEncoderConfig(_Section):
    """The text encoder: transformers' TF BERT / RoFormer, random or from a local checkpoint."""

    kind: str = "bert"  # "bert" | "roformer"
    pretrained_dir: str | None = None  # local transformers checkpoint directory
    vocab_size: int = 21128
    pad_token_id: int = 0
    mask_token_id: int = 103
    special_token_ids: tuple[int, ...] = _BERT_SPECIAL_IDS  # never masked by MLM
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position: int = 512  # uniter needs >= title_len + max_frames
    mlm_probability: float = 0.15  # masked-language-model pretraining (uniter, single_stream)
    # what the text tokens hold: "title", or "title+asr" (the ASR text follows the title as a
    # second segment, the longer of the two cut first); title_len counts the tokens of the whole
    source: str = "title"

    def _problems(self):
        if self.kind not in TEXT_ENCODERS:
            yield f"kind must be one of {TEXT_ENCODERS}, got {self.kind!r}"
        if self.source not in TEXT_SOURCES:
            yield f"source must be one of {TEXT_SOURCES}, got {self.source!r}"
        if self.pretrained_dir is not None and not self.pretrained_dir:
            yield "pretrained_dir must be None or a directory path, got ''"
        yield from _positive(self, ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                                    "max_position"))
        yield from _fraction(self, "mlm_probability", low_open=True)
        if self.hidden_size % max(self.num_heads, 1):
            yield f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
        token_ids = {"pad_token_id": self.pad_token_id, "mask_token_id": self.mask_token_id}
        token_ids.update({f"special_token_ids[{i}]": v for i, v in enumerate(self.special_token_ids)})
        for key, value in token_ids.items():
            if not 0 <= value < self.vocab_size:
                yield f"{key} must be in [0, vocab_size={self.vocab_size}), got {value}"
        if self.mask_token_id not in self.special_token_ids:
            yield f"mask_token_id ({self.mask_token_id}) must be one of special_token_ids"


@dataclasses.dataclass(frozen=True)
class FramesConfig(_Section):
    """How frames are normalised in-graph with statistics of the training data
    (`models.layers.FrameStandardizer`): "none", "standardize" per feature, or "zca" (whitening of
    the between-video covariance with the whiten_rank-th eigenvalue as shrinkage), after an optional
    signed power of every value (``power``)."""

    normalization: str = "none"  # "none" | "standardize" | "zca"
    whiten_rank: int = 64
    # signed power sign(x) |x|^power of every frame value before the statistics (and in-graph,
    # before the normalisation): 0.5 is the signed square root ("power normalisation"); 1: none
    power: float = 1.0
    # > 0: a linear mean-frame path added to the embedding, started as the PCA whitening of the
    # normalised mean frames with this many components (models.layers.MeanFramePath)
    path_rank: int = 0

    def _problems(self):
        if self.normalization not in FRAME_NORMALIZATIONS:
            yield f"normalization must be one of {FRAME_NORMALIZATIONS}, got {self.normalization!r}"
        yield from _positive(self, ("whiten_rank",))
        if not 0.0 < self.power <= 1.0:
            yield f"power must be in (0, 1], got {self.power}"
        if self.path_rank < 0:
            yield f"path_rank must be >= 0, got {self.path_rank}"
        if self.path_rank and self.normalization == "none":
            yield "path_rank > 0 needs normalization standardize or zca (its statistics start the path)"


TEXT_BASES = ("both", "auto", "tags", "lsa")
WIDE_FRAME_SPACES = ("auto", "standardised", "covariance", "within")


@dataclasses.dataclass(frozen=True)
class WideConfig(_Section):
    """A "wide" path added to every family's embedding (`models.layers.WidePath`): the strong
    linear-metric baseline of `infer.strong_baselines` (PCA-whitened mean frame, title and ASR token
    TF-IDF -> a linear basis, a linear metric fitted on the fold's training pairs), built in-graph
    from the model's own inputs and frozen when a finetune starts (`train.wide_path`); only its gate
    trains, so the deep part learns what the linear metric misses. Each text's basis is read through
    the tags (``"tags"``: a ridge from TF-IDF to the videos' tag LSA, fitted on unlabelled videos, the
    linear counterpart of tag pretraining) or the baseline's own LSA (``"lsa"``); by default
    (``"both"``) the two side by side, so the whitening and the metric fitted on the fold's pairs
    take from each what helps (``"auto"`` picks one per text, a noisier bet)."""

    enabled: bool = False
    lsa_dim: int = 128  # LSA components of the token TF-IDF before whitening
    frame_width: int = 128  # most whitened mean-frame components (the fit chooses k <= this)
    text_width: int = 64  # most whitened LSA components of the title, and of the ASR
    max_fit_videos: int = 20_000  # unlabelled (pointwise) videos used for TF-IDF, LSA and whitening
    # each text's linear basis: "both" (the two below stacked, each scaled to unit spread; the
    # whitening and the metric take what ranks the pairs), "tags" (ridge from TF-IDF to the videos'
    # tags, LSA where too few videos have tags), "lsa" (the strong baseline's own) or "auto" (per
    # fold and text, the one of tags / lsa that ranks the training pairs better)
    text_basis: str = "both"
    # the space the mean frame is whitened in: "standardised" (the frames as the model's standardiser
    # gives them), "covariance" (that standardisation undone: covariance PCA of the powered frames, as
    # the strong baseline's), "within" (each feature divided by its spread within videos, measured while
    # the path is fitted) or "auto" (per fold, as the strong baseline chooses: within unless another
    # space's whitened frame alone ranks the training pairs better by more than 0.01; docs/benchmarks.md,
    # "The floor chooses its frame space" and "Frames scaled by their spread within videos")
    frame_space: str = "auto"
    tag_ridge_alpha: float = 1.0  # L2 penalty of that ridge (rows of the TF-IDF are unit length)
    # the metric's diagonal stage before the full W (`infer.strong_baselines.train_metric`)
    metric_diagonal: bool = True
    # > 0: a fourth part, the mean frame read through the tags (a ridge from the PCA-whitened mean
    # frames to the videos' tag LSA, fitted on the unlabelled and training-pair videos, whitened
    # again; the fit chooses k <= this and its weight). 0: off, the default: it lost on two of five
    # held-out draws (docs/benchmarks.md, "Frames through the tags on five draws")
    frame_tags_width: int = 0
    frame_tags_alpha: float = 10.0  # L2 penalty of that ridge (its inputs are whitened)
    # also fit the unsupervised statistics (TF-IDF, LSA, whitening; never the tag ridge's targets or
    # the metric) on the inputs of the videos the fold's model scores: its validation pairs and
    # DATA/test_a, as the strong baseline does (at most max_fit_videos of the test videos)
    transductive: bool = False
    # > 0: the mean frame is pooled by idf over this many visual words (`infer.frame_words`: k-means of the
    # frames in their within-video-scaled whitened space of frame_words_width components, fitted with the
    # path on up to frame_words_fit_videos unlabelled and training-pair videos; a word's weight
    # ln((1 + N) / (1 + df)) ** frame_words_power), as the strong baseline's ``--frame-words``: shots many
    # videos share count less. 0: the plain mean, the default here; demo.sh's recipe sets 64 (FRAME_WORDS;
    # docs/benchmarks.md, "Frames pooled by idf")
    frame_words: int = 0
    frame_words_width: int = 32
    frame_words_power: float = 2.0
    frame_words_fit_videos: int = 2_000
    # sets of words, each k-means on its own sample from its own start; a frame weighs its mean idf over
    # them (one fit moves the floor by about +-0.005 on the foreign draws; docs/benchmarks.md, "Several sets of words")
    frame_words_fits: int = 4
    # > 0: the title's rare tokens (in at most rare_words_max_df of the fit videos), matched exactly: their
    # TF-IDF through a fixed random projection to this many dimensions, placed where the metric's embedding has
    # least energy, its weight (0 to 1) chosen on the training pairs (`infer.rare_words`). 0: off, the default
    # here; demo.sh's recipe sets 64 (RARE_WORDS; docs/benchmarks.md, "A title's rare words")
    rare_words: int = 0
    rare_words_max_df: float = 0.002

    def _problems(self):
        yield from _positive(self, ("lsa_dim", "frame_width", "text_width", "max_fit_videos", "tag_ridge_alpha",
                                    "frame_tags_alpha", "frame_words_width", "frame_words_power",
                                    "frame_words_fit_videos", "frame_words_fits"))
        if self.frame_words < 0 or self.frame_words == 1:
            yield f"frame_words must be 0 (off) or >= 2, got {self.frame_words}"
        if self.rare_words < 0:
            yield f"rare_words must be >= 0 (0: off), got {self.rare_words}"
        if not 0.0 < self.rare_words_max_df <= 1.0:
            yield f"rare_words_max_df must be in (0, 1], got {self.rare_words_max_df}"
        if self.frame_tags_width < 0:
            yield f"frame_tags_width must be >= 0 (0: off), got {self.frame_tags_width}"
        if self.text_basis not in TEXT_BASES:
            yield f"text_basis must be one of {TEXT_BASES}, got {self.text_basis!r}"
        if self.frame_space not in WIDE_FRAME_SPACES:
            yield f"frame_space must be one of {WIDE_FRAME_SPACES}, got {self.frame_space!r}"


@dataclasses.dataclass(frozen=True)
class TagLossConfig(_Section):
    """The tag head's loss over the top-10,000 tags, and its weight in pretraining."""

    kind: str = "bce"  # "bce" | "asl"
    reduction: str = "sum"  # over tags ("sum" | "mean"); always mean over the batch
    prior_positives: float = 5.0  # tag-head bias starts at logit(this / num_tags); 0: zeros
    asl_gamma_neg: float = 1.0
    asl_gamma_pos: float = 0.0
    asl_margin: float = 0.0
    weight: float = 1.0  # pretraining weight of the tag loss (single_stream has its own)

    def _problems(self):
        if self.kind not in TAG_LOSSES:
            yield f"kind must be one of {TAG_LOSSES}, got {self.kind!r}"
        if self.reduction not in TAG_REDUCTIONS:
            yield f"reduction must be one of {TAG_REDUCTIONS}, got {self.reduction!r}"
        yield from _non_negative(self, ("prior_positives", "asl_gamma_neg", "asl_gamma_pos", "weight"))
        yield from _fraction(self, "asl_margin")


@dataclasses.dataclass(frozen=True)
class NeXtVLADConfig(_Section):
    """NeXtVLAD over the frames and the SE fusion (official sizes): baseline, dual_tower,
    frame_diff, mix_nextvlad."""

    cluster_size: int = 64
    groups: int = 8
    expansion: int = 2
    dropout: float = 0.2
    output_size: int = 1024
    se_reduction: int = 8

    def _problems(self):
        yield from _positive(self, ("cluster_size", "groups", "expansion", "output_size", "se_reduction"))
        yield from _fraction(self, "dropout")


@dataclasses.dataclass(frozen=True)
class MixNeXtVLADConfig(_Section):
    """mix_nextvlad (team 618): gated NeXtVLAD experts, KL to the mixture, InfoNCE."""

    num_experts: int = 3
    kl_temperature: float = 2.0
    expert_tag_weight: float = 1.0
    kl_weight: float = 1.0
    infonce_weight: float = 1.0

    def _problems(self):
        yield from _positive(self, ("num_experts", "kl_temperature"))
        yield from _non_negative(self, ("expert_tag_weight", "kl_weight", "infonce_weight"))


@dataclasses.dataclass(frozen=True)
class UniterConfig(_Section):
    """uniter (team 618): one encoder over title tokens and projected frames."""

    mlm_weight: float = 1.0

    def _problems(self):
        yield from _non_negative(self, ("mlm_weight",))


@dataclasses.dataclass(frozen=True)
class SingleStreamConfig(_Section):
    """single_stream (1st place): ``[CLS] frames [SEP] title [SEP]``, tag + MLM + masked frames.

    Published weights: tag x 1250/3 on the tag loss *averaged* over tags, MLM / 3.75, MFM / 9.
    With ``tags.reduction="sum"`` the model divides ``tag_weight`` by num_tags, so the effective
    loss is the same."""

    mfm_probability: float = 0.15  # share of real frames zeroed and predicted
    mfm_temperature: float = 1.0  # masked-frame NCE: logits = prediction . frame / this
    tag_weight: float = 1250.0 / 3.0
    mlm_weight: float = 1.0 / 3.75
    mfm_weight: float = 1.0 / 9.0

    def _problems(self):
        yield from _positive(self, ("mfm_temperature",))
        yield from _non_negative(self, ("tag_weight", "mlm_weight", "mfm_weight"))
        yield from _fraction(self, "mfm_probability", low_open=True)


@dataclasses.dataclass(frozen=True)
class CrossModalConfig(_Section):
    """cross_modal (seed team 000): transformer video encoder and cross-modal fusion."""

    video_hidden_size: int = 512
    video_num_layers: int = 2
    video_num_heads: int = 8
    video_intermediate_size: int = 2048
    fusion_num_layers: int = 1
    infonce_weight: float = 0.1  # InfoNCE of pooled video vs pooled text before fusion (0: off)

    def _problems(self):
        yield from _positive(self, ("video_hidden_size", "video_num_layers", "video_num_heads",
                                    "video_intermediate_size", "fusion_num_layers"))
        yield from _non_negative(self, ("infonce_weight",))
        if self.video_hidden_size % max(self.video_num_heads, 1):
            yield (f"video_hidden_size ({self.video_hidden_size}) must be divisible by "
                   f"video_num_heads ({self.video_num_heads})")


# ---------------------------------------------------------------------- the model config
# Every key of the former flat config -> (section, field) of the nested one.
LEGACY_KEYS: dict[str, tuple[str, str]] = {
    "text_encoder": ("text", "kind"), "pretrained_text_dir": ("text", "pretrained_dir"),
    "vocab_size": ("text", "vocab_size"), "pad_token_id": ("text", "pad_token_id"),
    "mask_token_id": ("text", "mask_token_id"), "special_token_ids": ("text", "special_token_ids"),
    "text_hidden_size": ("text", "hidden_size"), "text_num_layers": ("text", "num_layers"),
    "text_num_heads": ("text", "num_heads"), "text_intermediate_size": ("text", "intermediate_size"),
    "text_max_position": ("text", "max_position"), "mlm_probability": ("text", "mlm_probability"),
    "text_source": ("text", "source"),
    "frame_normalization": ("frames", "normalization"), "frame_whiten_rank": ("frames", "whiten_rank"),
    "frame_path_rank": ("frames", "path_rank"), "wide_path": ("wide", "enabled"),
    "tag_loss": ("tags", "kind"), "tag_reduction": ("tags", "reduction"),
    "tag_prior_positives": ("tags", "prior_positives"), "asl_gamma_neg": ("tags", "asl_gamma_neg"),
    "asl_gamma_pos": ("tags", "asl_gamma_pos"), "asl_margin": ("tags", "asl_margin"),
    "tag_weight": ("tags", "weight"),
    "nextvlad_cluster_size": ("nextvlad", "cluster_size"), "nextvlad_groups": ("nextvlad", "groups"),
    "nextvlad_expansion": ("nextvlad", "expansion"), "nextvlad_dropout": ("nextvlad", "dropout"),
    "nextvlad_output_size": ("nextvlad", "output_size"), "se_reduction": ("nextvlad", "se_reduction"),
    "num_experts": ("mix_nextvlad", "num_experts"), "kl_temperature": ("mix_nextvlad", "kl_temperature"),
    "expert_tag_weight": ("mix_nextvlad", "expert_tag_weight"), "kl_weight": ("mix_nextvlad", "kl_weight"),
    "infonce_weight": ("mix_nextvlad", "infonce_weight"),
    "mlm_weight": ("uniter", "mlm_weight"),
    "mfm_probability": ("single_stream", "mfm_probability"),
    "mfm_temperature": ("single_stream", "mfm_temperature"),
    "single_stream_tag_weight": ("single_stream", "tag_weight"),
    "single_stream_mlm_weight": ("single_stream", "mlm_weight"),
    "single_stream_mfm_weight": ("single_stream", "mfm_weight"),
    "video_hidden_size": ("cross_modal", "video_hidden_size"),
    "video_num_layers": ("cross_modal", "video_num_layers"),
    "video_num_heads": ("cross_modal", "video_num_heads"),
    "video_intermediate_size": ("cross_modal", "video_intermediate_size"),
    "fusion_num_layers": ("cross_modal", "fusion_num_layers"),
    "cross_modal_infonce_weight": ("cross_modal", "infonce_weight"),
}


@dataclasses.dataclass(frozen=True, init=False)
class ModelConfig(_Section):
    """Every model family's hyper-parameters; see the module docstring."""

    # which family (key of models.registry.MODELS)
    name: str = "baseline"

    # input sizes (official layout)
    frame_dim: int = schema.FRAME_DIM
    max_frames: int = schema.MAX_FRAMES
    title_len: int = schema.TITLE_LEN
    num_tags: int = schema.NUM_TAGS
    embedding_dim: int = schema.EMBEDDING_DIM

    # dropout of fusion layers and of a randomly initialised text encoder
    dropout: float = 0.1
    # InfoNCE temperature of the video/text alignment (mix_nextvlad, cross_modal)
    infonce_temperature: float = 0.07

    text: TextEncoderConfig = dataclasses.field(default_factory=TextEncoderConfig)
    frames: FramesConfig = dataclasses.field(default_factory=FramesConfig)
    wide: WideConfig = dataclasses.field(default_factory=WideConfig)
    tags: TagLossConfig = dataclasses.field(default_factory=TagLossConfig)
    nextvlad: NeXtVLADConfig = dataclasses.field(default_factory=NeXtVLADConfig)
    mix_nextvlad: MixNeXtVLADConfig = dataclasses.field(default_factory=MixNeXtVLADConfig)
    uniter: UniterConfig = dataclasses.field(default_factory=UniterConfig)
    single_stream: SingleStreamConfig = dataclasses.field(default_factory=SingleStreamConfig)
    cross_modal: CrossModalConfig = dataclasses.field(default_factory=CrossModalConfig)

    def __init__(self, **values: Any):
        """Keyword fields, sections as section configs or dicts; flat `LEGACY_KEYS` accepted."""
        nested = _nest(values, type(self).__name__)
        for field in dataclasses.fields(self):
            if field.name in nested:
                value = nested[field.name]
            elif field.default is not dataclasses.MISSING:
                value = field.default
            else:
                value = field.default_factory()
            object.__setattr__(self, field.name, value)
        self.__post_init__()

    def __getattr__(self, name: str) -> Any:
        """Flat legacy names read through to their section (``config.vocab_size``)."""
        if name in LEGACY_KEYS:
            section, field = LEGACY_KEYS[name]
            return getattr(object.__getattribute__(self, section), field)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _problems(self):
        if not self.name:
            yield "name must be a non-empty registry key"
        yield from _positive(self, ("frame_dim", "max_frames", "title_len", "num_tags", "embedding_dim",
                                    "infonce_temperature"))
        yield from _fraction(self, "dropout")
        if self.tags.prior_positives >= self.num_tags:
            yield f"tags.prior_positives ({self.tags.prior_positives}) must be < num_tags ({self.num_tags})"
        wide_width = self.wide.frame_width + 2 * self.wide.text_width + self.wide.frame_tags_width
        if self.wide.enabled and wide_width > self.embedding_dim:
            yield (f"wide.frame_width + 2 * wide.text_width + wide.frame_tags_width ({wide_width}) must be <= "
                   f"embedding_dim ({self.embedding_dim}): the wide path's metric maps onto the embedding without loss")
        if self.wide.enabled and self.wide.rare_words > self.embedding_dim:
            yield (f"wide.rare_words ({self.wide.rare_words}) must be <= embedding_dim ({self.embedding_dim}): the title's "
                   f"rare words take that many of the embedding's directions")
        if self.text.max_position < self.title_len:
            yield f"text.max_position ({self.text.max_position}) must be >= title_len ({self.title_len})"
        if (self.frame_dim * self.nextvlad.expansion) % max(self.nextvlad.groups, 1):
            yield (f"frame_dim * nextvlad.expansion ({self.frame_dim * self.nextvlad.expansion}) "
                   f"must be divisible by nextvlad.groups ({self.nextvlad.groups})")

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        """Inverse of `to_dict`; also reads the flat layout of older ``config.json`` files."""
        if not isinstance(data, Mapping):
            raise TypeError(f"ModelConfig.from_dict expects a mapping, got {type(data).__name__}")
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "ModelConfig":
        """A validated copy with ``changes``: fields, whole sections, section dicts of changes
        (``text={"num_layers": 2}``), dotted keys (``text.num_layers``) or flat legacy keys
        (``text_num_layers``)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in _nest(changes, "ModelConfig").items():
            if isinstance(values[name], _Section) and isinstance(value, Mapping):
                value = values[name].replace(**value)
            values[name] = value
        return type(self)(**values)

    @staticmethod
    def key_path(key: str) -> str:
        """The nested path (``text.num_layers``) of a flat legacy or nested key."""
        if key in LEGACY_KEYS:
            return ".".join(LEGACY_KEYS[key])
        return key

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


def _nest(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Keyword values with flat legacy keys (and dotted ``section.field`` keys) gathered into
    per-section dicts; a section given whole and by parts is an error."""
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    nested: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if key in LEGACY_KEYS:
            section, name = LEGACY_KEYS[key]
        elif "." in key:
            section, _, name = key.partition(".")
        elif key in fields:
            nested[key] = value
            continue
        else:
            valid = sorted(fields | set(LEGACY_KEYS))
            raise ValueError(f"unknown {where} key(s) {[key]}; valid keys: {valid}")
        if section not in fields:
            raise ValueError(f"unknown {where} section {section!r} in key {key!r}")
        parts.setdefault(section, {})[name] = value
    for section, changes in parts.items():
        given = nested.get(section)
        if given is None:
            nested[section] = changes
        elif isinstance(given, Mapping):
            nested[section] = {**given, **changes}
        else:
            nested[section] = given.replace(**changes)
    return nested


# Size presets (flat legacy keys are fine here). "full" is the dataclass default: official
# NeXtVLAD and a BERT-base sized (12 layers, 768 wide) text encoder, the size of
# hfl/chinese-roberta-wwm-ext.
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


def _coerce(where: str, annotation: Any, value: Any) -> Any:
    """Check a field's type from its annotation; ints become floats, lists become tuples."""
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)
    if optional:
        if value is None:
            return None
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is str:
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string{' or None' if optional else ''}, got {value!r}")
    elif annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where} must be an integer, got {value!r}")
    elif annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where} must be a number, got {value!r}")
        return float(value)
    elif annotation is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be true or false, got {value!r}")
    elif typing.get_origin(annotation) is tuple:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise TypeError(f"{where} must be a list of integers, got {value!r}")
        value = tuple(value)
        if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise TypeError(f"{where} must be a list of integers, got {list(value)!r}")
    return value
