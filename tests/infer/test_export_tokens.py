"""The export's in-graph tokenisation (infer/export.py) against the project's BertTokenizerFast
(tfrecord_tools.tokenization.encode_titles): the title alone and the ``[CLS] title [SEP] asr [SEP]``
pair of ``text.source=title+asr``, ids and attention mask exactly."""
from __future__ import annotations

import random
import types

import numpy as np
import pytest

CORPUS = ["标题中文视频 猫咪 搞笑 日常 hello world video abc test café naïve iphone15 24k",
          "语音识别 asr text 123 世界杯 酒店 Привет мир ！，？、《》 (a-b) [c] x.y",
          "今天 天气 很好 我们 一起 去 公园 玩 吧 ok good 2021 qq browser"]
CJK = "标题中文视频猫咪搞笑日常语音识别世界杯酒店今天气很好我们一起去公园玩吧"
RARE = "龘齉靐"  # CJK characters outside the vocabulary: [UNK]
WORDS = ["hello", "World", "VIDEO", "café", "Naïve", "iPhone15", "24k", "qq", "ok", "2021", "Привет", "мир",
         "привет" * 10,  # 60 characters, 120 bytes: pieces, not [UNK] (the limit counts characters)
         "a" * 100, "a" * 101]  # 101 characters: [UNK]
PUNCT = list(",.!?-()[]/:;'\"") + list("！，？、《》。：")
ODD = ["😀", "\u200b", "\x00", "\t", "\n", "\r\n", "  ", "é", "ÉCOLE"]  # emoji [UNK], format/control dropped


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from tfrecord_tools.tokenization import build_vocab, load_tokenizer

    out = tmp_path_factory.mktemp("pair_vocab")
    build_vocab(CORPUS, out, "bert")
    return load_tokenizer(out, "bert")


def text_tokenizer(tokenizer, max_len: int, source: str):
    """The export's tokenizer module for a stand-in member with this tokenizer, length and source."""
    from infer.export import Member, make_text_tokenizer

    config = types.SimpleNamespace(title_len=max_len, text=types.SimpleNamespace(kind="bert", source=source))
    run = types.SimpleNamespace(decoder=types.SimpleNamespace(tokenizer=tokenizer), run_dir="stand-in",
                                config=types.SimpleNamespace(model=config))
    return make_text_tokenizer(Member(run, "embedding"))


def in_graph(module, titles, asr_texts=None):
    """The module's (ids, mask) for byte strings, run as a graph function (as in the export)."""
    import tensorflow as tf

    spec = tf.TensorSpec([None], tf.string)
    if asr_texts is None:
        ids, mask = tf.function(module, input_signature=[spec])(tf.constant(titles))
    else:
        ids, mask = tf.function(module, input_signature=[spec, spec])(tf.constant(titles), tf.constant(asr_texts))
    return ids.numpy(), mask.numpy()


def segment_lengths(tokenizer, ids, mask):
    """(title tokens, ASR tokens) of each encoded ``[CLS] title [SEP] asr [SEP]`` row."""
    real = mask.sum(axis=1)
    first_sep = np.argmax(ids == tokenizer.sep_token_id, axis=1)
    return first_sep - 1, real - first_sep - 2


def random_text(rng: random.Random, parts: int) -> str:
    """CJK (some outside the vocabulary), Latin/Cyrillic words, digits, punctuation, odd characters."""
    out = []
    for _ in range(parts):
        kind = rng.random()
        if kind < 0.45:
            out.append("".join(rng.choice(CJK + RARE if rng.random() < 0.1 else CJK) for _ in range(rng.randint(1, 4))))
        elif kind < 0.7:
            out.append(rng.choice(WORDS[:-3] if rng.random() < 0.9 else WORDS))
        elif kind < 0.85:
            out.append(rng.choice(PUNCT))
        elif kind < 0.93:
            out.append(str(rng.randint(0, 99999)))
        else:
            out.append(rng.choice(ODD))
        out.append(rng.choice(["", " ", " ", "  "]))
    return "".join(out)


def generated_pairs(seed: int = 0, count: int = 300) -> list[tuple[bytes, bytes]]:
    """Random title/ASR pairs (empty, short, long over 2 * max_len characters, equal token counts),
    plus the edge cases of the missing-ASR marker and of invalid UTF-8."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        title = random_text(rng, rng.choice([0, 1, 3, 8, 20]))
        asr = rng.choice(["nan", "", random_text(rng, rng.choice([1, 4, 12, 40, 120]))])
        pairs.append((title, asr))
    for n in range(0, 40, 3):  # equal token counts: ties of the truncation, odd and even
        chars = [rng.choice(CJK) for _ in range(n)]
        pairs.append(("".join(chars), "".join(rng.sample(chars, n))))
        pairs.append(("".join(chars), "".join(chars[:-1]) + "。" if chars else "。"))
    pairs += [("", ""), ("", "nan"), ("nan", "nan"), ("标题", "NaN"), ("标题", " nan"), ("标题", "nan "),
              ("标题", "nan" * 50), ("", "语音" * 100), ("标题" * 100, ""), ("标题" * 100, "nan"),
              ("hello world", "a" * 200), ("视频", "привет" * 10 + " 语音"), ("猫咪", "😀" * 70 + "猫")]
    encoded = [(t.encode("utf-8"), a.encode("utf-8")) for t, a in pairs]
    # invalid UTF-8 (the reader decodes it to U+FFFD, which the tokenizer drops; each counts as
    # one character of the 2 * max_len cut), also straddling the cut
    encoded += [(b"\xe6\xa0\x87\xff\xe9\xa2\x98", b"\xe8\xaf\xad\xff\xfe" + "语音".encode() * 40),
                (b"ab\xc0\x80cd", b"\xed\xa0\x80" + "识别".encode() * 40 + b"\xe8\xaf"),
                ("世界杯".encode(), b"x" * 15 + b"\xe4\xb8" + "中文".encode() * 30), (b"\xff", b"\xff")]
    return encoded


def test_longest_first_rule_matches_the_fast_tokenizer(tokenizer):
    """The truncation rule of ``longest_first_lengths``, measured: every title / ASR token count (ties,
    empty segments) up to 24 under budgets 0..16 and up to 40 under 29, 30, 61, 62 (odd and even)."""
    import tensorflow as tf

    from infer.export import longest_first_lengths
    from tfrecord_tools.tokenization import encode_titles

    checked = 0
    for max_len in [*range(3, 20), 32, 33, 64, 65]:
        # one token a CJK character; the ASR stays within its 2 * max_len character cut
        most = 24 if max_len < 20 else 40
        counts = [(a, b) for a in range(most + 1) for b in range(min(most, 2 * max_len) + 1)]
        ids, mask = encode_titles(tokenizer, ["中" * a for a, _ in counts], max_len, ["文" * b for _, b in counts])
        kept_title, kept_asr = segment_lengths(tokenizer, ids, mask)
        rule_title, rule_asr = longest_first_lengths(tf.constant([a for a, _ in counts]),
                                                     tf.constant([b for _, b in counts]), max_len - 3)
        np.testing.assert_array_equal(kept_title, rule_title.numpy(), err_msg=f"max_len {max_len}")
        np.testing.assert_array_equal(kept_asr, rule_asr.numpy(), err_msg=f"max_len {max_len}")
        checked += len(counts)
    assert checked > 10000

    def kept(title: int, asr: int, max_len: int) -> tuple[int, int]:
        first, second = longest_first_lengths(tf.constant([title]), tf.constant([asr]), max_len - 3)
        return int(first[0]), int(second[0])

    assert kept(3, 4, 10) == (3, 4)  # both fit
    assert kept(2, 30, 10) == (2, 5)  # the shorter fits in half the budget: only the longer is cut
    assert kept(7, 7, 8) == (2, 3) and kept(8, 7, 8) == (3, 2)  # both cut: the odd token to the longer, on a tie to the ASR
    assert kept(7, 7, 9) == (3, 3) and kept(0, 30, 9) == (0, 6) and kept(30, 0, 9) == (6, 0)


@pytest.mark.parametrize("max_len", [5, 8, 9, 64])
def test_pair_tokens_in_graph_equal_encode_titles(tokenizer, max_len):
    """``[CLS] title [SEP] asr [SEP]`` in the graph == ``encode_titles(..., asr_texts)`` on ~340
    generated pairs; a pair model given no ASR reads it as missing; a title model ignores the ASR."""
    from tfrecord_tools.tokenization import MISSING_ASR, encode_titles

    pairs = generated_pairs()
    titles, asr = [t for t, _ in pairs], [a for _, a in pairs]
    pair_module = text_tokenizer(tokenizer, max_len, "title+asr")
    expected_ids, expected_mask = encode_titles(tokenizer, titles, max_len, asr)
    ids, mask = in_graph(pair_module, titles, asr)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(mask, expected_mask)
    kept_title, kept_asr = segment_lengths(tokenizer, ids, mask)
    assert (mask.sum(1) == max_len).sum() > 20 and (kept_title == kept_asr).sum() > 5  # truncation and ties occur

    no_asr_ids, no_asr_mask = in_graph(pair_module, titles)
    missing_ids, missing_mask = encode_titles(tokenizer, titles, max_len, [MISSING_ASR] * len(titles))
    np.testing.assert_array_equal(no_asr_ids, missing_ids)
    np.testing.assert_array_equal(no_asr_mask, missing_mask)

    title_module = text_tokenizer(tokenizer, max_len, "title")
    alone_ids, alone_mask = encode_titles(tokenizer, titles, max_len)
    for got in (in_graph(title_module, titles), in_graph(title_module, titles, asr)):
        np.testing.assert_array_equal(got[0], alone_ids)
        np.testing.assert_array_equal(got[1], alone_mask)


def test_pair_needs_room_for_three_special_tokens(tokenizer):
    from tfrecord_tools.errors import DataError

    with pytest.raises(DataError, match="title_len 2 leaves no room"):
        text_tokenizer(tokenizer, 2, "title+asr")
