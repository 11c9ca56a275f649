"""Tokenizers: build_vocab -> load_tokenizer -> encode_titles for BERT and RoFormer, and loading a
checkpoint-style directory written by save_pretrained."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tfrecord_tools import tokenization

TITLES = [
    "太土豪！世界首家24k纯金酒店在越南开业。马桶都镀金",
    "日本神职人员网络走红，祭典扮大葱，只为祈福消灾！",
    "世界首家酒店在越南开业",
    "世界杯 iPhone 手机 开箱",
    "phone 世界 酒店 i",
]


@pytest.fixture(scope="module", params=["bert", "roformer"])
def built(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"tok_{request.param}")
    vocab_path = tokenization.build_vocab(TITLES, out, kind=request.param)
    return request.param, out, vocab_path


def _vocab(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read().split("\n")[:-1]


def test_vocab_layout(built):
    kind, out, vocab_path = built
    assert vocab_path == os.path.join(out, "vocab.txt")
    vocab = _vocab(vocab_path)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) == len(set(vocab))
    assert vocab[5:7] == ["世", "界"]  # the most frequent characters (4 times each; ties by text)
    assert {"2", "##4", "##k", "p", "##h", "##o", "##n", "##e"} <= set(vocab)  # lower-cased wordpieces
    assert ("世界" in vocab) == (kind == "roformer")  # jieba words only for RoFormer
    assert not [name for name in os.listdir(out) if name.startswith(".")]  # no staging left behind


def test_round_trip_encode(built):
    kind, out, _ = built
    tokenizer = tokenization.load_tokenizer(out, kind)
    assert type(tokenizer).__name__ == {"bert": "BertTokenizerFast", "roformer": "RoFormerTokenizerFast"}[kind]
    input_ids, mask = tokenization.encode_titles(tokenizer, TITLES, max_len=32)
    assert input_ids.dtype == np.int32 and mask.dtype == np.int32 and input_ids.shape == (5, 32)
    assert (input_ids[:, 0] == tokenizer.cls_token_id).all()
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token_id not in input_ids
    lengths = mask.sum(axis=1)
    for row, length in zip(input_ids, lengths):
        assert row[length - 1] == tokenizer.sep_token_id
        assert (row[length:] == 0).all()
    assert (mask == (np.arange(32) < lengths[:, None])).all()
    tokens = tokenizer.convert_ids_to_tokens(input_ids[2, 1:lengths[2] - 1].tolist())
    if kind == "roformer":
        assert tokens == ["世界", "首家", "酒店", "在", "越南", "开业"]
    else:
        assert tokens == list("世界首家酒店在越南开业")
    assert "".join(t.removeprefix("##") for t in tokens) == TITLES[2]


def test_bytes_truncation_and_unseen_words(built):
    kind, out, _ = built
    tokenizer = tokenization.load_tokenizer(out, kind)
    as_text, _ = tokenization.encode_titles(tokenizer, TITLES[:2], max_len=8)
    as_bytes, mask = tokenization.encode_titles(tokenizer, [t.encode("utf-8") for t in TITLES[:2]], max_len=8)
    np.testing.assert_array_equal(as_text, as_bytes)
    assert mask.sum() == 16 and (as_bytes[:, -1] == tokenizer.sep_token_id).all()  # truncated to 8
    # "iphone" was never seen whole: it spells out from pieces instead of becoming [UNK]
    ids, mask = tokenization.encode_titles(tokenizer, ["iphone 酒店", "未知"], max_len=12)
    tokens = tokenizer.convert_ids_to_tokens(ids[0, 1:mask[0].sum() - 1].tolist())
    assert tokens[:6] == ["i", "##p", "##h", "##o", "##n", "##e"]
    assert tokenizer.convert_ids_to_tokens(ids[1, 1:3].tolist()) == ["[UNK]", "[UNK]"]
    empty_ids, empty_mask = tokenization.encode_titles(tokenizer, [], max_len=12)
    assert empty_ids.shape == empty_mask.shape == (0, 12)


def test_max_size_and_min_count(tmp_path):
    path = tokenization.build_vocab(TITLES, tmp_path / "small", max_size=12)
    vocab = _vocab(path)
    assert len(vocab) == 12 and vocab[5:7] == ["世", "界"]
    frequent = _vocab(tokenization.build_vocab(TITLES, tmp_path / "frequent", min_count=3))
    assert set(frequent[5:]) >= {"世", "界", "酒", "店"} and "马" not in frequent


def test_checkpoint_style_directories(tmp_path):
    """A downloaded checkpoint ships vocab.txt plus save_pretrained files (hfl: with tokenizer.json;
    junnyu/roformer: slow-tokenizer files only); both load from the local directory."""
    from transformers import BertTokenizerFast, RoFormerTokenizer

    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "世界", "世", "界", "你", "好"]) + "\n",
                          encoding="utf-8")
    bert_dir, roformer_dir = tmp_path / "bert_ckpt", tmp_path / "roformer_ckpt"
    BertTokenizerFast(vocab_file=str(vocab_file)).save_pretrained(bert_dir)
    RoFormerTokenizer(vocab_file=str(vocab_file)).save_pretrained(roformer_dir)
    assert (bert_dir / "tokenizer.json").exists() and not (roformer_dir / "tokenizer.json").exists()

    bert = tokenization.load_tokenizer(bert_dir, "bert")
    ids, _ = tokenization.encode_titles(bert, ["你好世界"], max_len=8)
    assert bert.convert_ids_to_tokens(ids[0].tolist()) == ["[CLS]", "你", "好", "世", "界", "[SEP]", "[PAD]", "[PAD]"]
    roformer = tokenization.load_tokenizer(roformer_dir, "roformer")
    ids, _ = tokenization.encode_titles(roformer, ["你好世界"], max_len=8)
    assert roformer.convert_ids_to_tokens(ids[0, :4].tolist()) == ["[CLS]", "你", "好", "世界"]


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tokenization.load_tokenizer(tmp_path / "missing", "bert")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no vocab\.txt"):
        tokenization.load_tokenizer(tmp_path / "empty", "bert")
    with pytest.raises(ValueError, match="unknown tokenizer kind 'gpt'"):
        tokenization.build_vocab(TITLES, tmp_path / "x", kind="gpt")
    with pytest.raises(ValueError, match="max_size"):
        tokenization.build_vocab(TITLES, tmp_path / "x", max_size=5)
    with pytest.raises(ValueError, match="at least one title"):
        tokenization.build_vocab([], tmp_path / "x")


def test_reader_import_does_not_load_transformers():
    code = "import sys, tfrecord_tools.reader; sys.exit(1 if 'transformers' in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_title_and_asr_segments(built):
    """text_source title+asr: [CLS] title [SEP] asr [SEP]; a missing ASR ("nan") adds nothing; the
    longer segment is cut first, so a long ASR never pushes out a title that fills at most half."""
    kind, out, _ = built
    tokenizer = tokenization.load_tokenizer(out, kind)
    titles = [TITLES[2], TITLES[2], TITLES[2]]
    asr = ["世界杯 酒店", tokenization.MISSING_ASR, "酒店" * 200]
    input_ids, mask = tokenization.encode_titles(tokenizer, titles, max_len=32, asr_texts=asr)
    alone, alone_mask = tokenization.encode_titles(tokenizer, titles[:1], max_len=32)
    title_len = int(alone_mask.sum())
    sep = tokenizer.sep_token_id
    # the title part is exactly the title encoded alone, then the ASR segment
    np.testing.assert_array_equal(input_ids[0, :title_len], alone[0, :title_len])
    assert input_ids[0, int(mask[0].sum()) - 1] == sep and mask[0].sum() > title_len
    assert int(mask[1].sum()) <= title_len + 1  # "nan" is no text: at most an empty segment's [SEP]
    assert mask[2].sum() == 32  # truncated to max_len
    np.testing.assert_array_equal(input_ids[2, :title_len], alone[0, :title_len])  # title kept whole
    with pytest.raises(ValueError, match="3 titles but 2 ASR texts"):
        tokenization.encode_titles(tokenizer, titles, max_len=32, asr_texts=asr[:2])
    with pytest.raises(ValueError, match="room for \\[CLS\\], \\[SEP\\] and \\[SEP\\]"):
        tokenization.encode_titles(tokenizer, titles, max_len=2, asr_texts=asr)


def test_decoder_text_source(built):
    import tensorflow as tf

    from tfrecord_tools.reader import VideoDecoder

    kind, out, _ = built
    tokenizer = tokenization.load_tokenizer(out, kind)
    decoder = VideoDecoder(tokenizer=tokenizer, title_len=24, text_source="title+asr")
    ids, mask = decoder.tokenize(tf.constant([TITLES[2]]), tf.constant(["世界杯 酒店"]))
    title_only, title_mask = VideoDecoder(tokenizer=tokenizer, title_len=24).tokenize(tf.constant([TITLES[2]]),
                                                                                     tf.constant(["世界杯 酒店"]))
    assert int(mask.numpy().sum()) > int(title_mask.numpy().sum())  # the default ignores the ASR
    with pytest.raises(ValueError, match="needs the ASR texts"):
        decoder.tokenize(tf.constant([TITLES[2]]))
    with pytest.raises(ValueError, match="text_source must be one of"):
        VideoDecoder(tokenizer=tokenizer, text_source="asr")


def test_save_tokenizer_leaves_the_live_tokenizer_as_it_was(built, tmp_path):
    """transformers' RoFormerTokenizerFast.save_pretrained drops the jieba pre-tokenizer of the live
    object (Chinese runs then become [UNK]); save_tokenizer puts it back, and the copy reloads the same."""
    kind, out, _ = built
    tokenizer = tokenization.load_tokenizer(out, kind)
    before, _ = tokenization.encode_titles(tokenizer, TITLES, max_len=32)
    tokenization.save_tokenizer(tokenizer, tmp_path / "copy")
    after, _ = tokenization.encode_titles(tokenizer, TITLES, max_len=32)
    np.testing.assert_array_equal(after, before)
    reloaded, _ = tokenization.encode_titles(tokenization.load_tokenizer(tmp_path / "copy", kind), TITLES, max_len=32)
    np.testing.assert_array_equal(reloaded, before)
    assert (before == tokenizer.unk_token_id).sum() == 0  # every title token is in the built vocabulary


def test_prepare_tokenizer_from_a_pretrain_run_tokenizes_like_a_fresh_load(built, tmp_path):
    """A finetune takes its tokenizer from the pretrain run and keeps a copy: the tokenizer it then
    uses must encode exactly as the one inference loads from that copy."""
    from train import stage
    from train.config import TrainConfig

    kind, out, _ = built
    config = TrainConfig().replace(model={"text": {"kind": kind}})
    tokenizer = stage.prepare_tokenizer(config, str(tmp_path), titles=None, source_dir=str(out))
    used, _ = tokenization.encode_titles(tokenizer, TITLES, max_len=32)
    fresh, _ = tokenization.encode_titles(tokenization.load_tokenizer(tmp_path / stage.TOKENIZER_DIR, kind), TITLES,
                                          max_len=32)
    np.testing.assert_array_equal(used, fresh)
