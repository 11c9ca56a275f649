"""Title tokenisation with the BERT-style tokenizer of the chosen text encoder.

Two kinds, matching the text encoders of ``models/``:

* ``"bert"`` -- ``BertTokenizerFast`` (Chinese BERT / RoBERTa-wwm: every CJK character is a
  token, other runs are split on whitespace and punctuation and then wordpieced);
* ``"roformer"`` -- ``RoFormerTokenizerFast``: the text is first split into words with jieba
  (``rjieba``); a word found in the vocabulary stays one token, any other word falls back to
  characters / wordpieces.

``build_vocab`` derives a vocabulary from the data (for a small, randomly initialised encoder):
the special tokens first (``[PAD]`` = 0), then characters by frequency, then ``##`` continuation
pieces (so that a word never seen whole -- ``24k``, ``iphone15`` -- decomposes into pieces instead
of becoming ``[UNK]``), and for RoFormer the most frequent jieba words. It writes the files
``save_pretrained`` writes, so ``load_tokenizer(out_dir, kind)`` round-trips; a downloaded
checkpoint directory (``hfl/chinese-roberta-wwm-ext``, ``junnyu/roformer_chinese_base``) loads the
same way, always from the local directory, never from the network.

This is the only module of ``tfrecord_tools`` that uses ``transformers``, and it imports it
inside functions so that importing the readers does not pay for it unless they tokenise.
"""
from __future__ import annotations

import collections
import os
import shutil
import tempfile
import unicodedata
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TOKENIZER_KINDS = ("bert", "roformer")
VOCAB_FILE = "vocab.txt"
DEFAULT_VOCAB_SIZE = 21128  # the size of the Chinese BERT vocabulary
MODEL_MAX_LENGTH = 512


def _check_kind(kind: str) -> str:
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {TOKENIZER_KINDS}")
    return kind


def _tokenizer_class(kind: str):
    import transformers

    return {"bert": transformers.BertTokenizerFast, "roformer": transformers.RoFormerTokenizerFast}[_check_kind(kind)]


def _as_text(title) -> str:
    if isinstance(title, (bytes, np.bytes_)):
        return bytes(title).decode("utf-8", errors="replace")
    return str(title)


def _is_cjk(char: str) -> bool:
    """CJK ideographs, the ranges BERT's basic tokenizer splits into single characters."""
    code = ord(char)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
            or 0x2A700 <= code <= 0x2B73F or 0x2B740 <= code <= 0x2B81F or 0x2B820 <= code <= 0x2CEAF
            or 0xF900 <= code <= 0xFAFF or 0x2F800 <= code <= 0x2FA1F)


def _count_pieces(word: str, chars: collections.Counter, pieces: collections.Counter) -> None:
    """Count what WordPiece needs to spell ``word`` without [UNK]: its first char and ##rest."""
    chars[word[0]] += 1
    for char in word[1:]:
        pieces["##" + char] += 1


def _ranked(counter: collections.Counter, min_count: int) -> list[str]:
    """Tokens with at least ``min_count`` occurrences, most frequent first (ties by text)."""
    return [token for token, count in sorted(counter.items(), key=lambda item: (-item[1], item[0]))
            if count >= min_count]


def build_vocab(titles: Iterable[str | bytes], out_dir: str | os.PathLike, kind: str = "bert",
                max_size: int = DEFAULT_VOCAB_SIZE, min_count: int = 1) -> str:
    """Build a vocabulary from ``titles`` and write a tokenizer directory; returns ``out_dir/vocab.txt``.

    Order: special tokens, characters (frequency), ``##`` pieces (frequency; every alphanumeric
    non-CJK character gets one), then -- for ``roformer`` -- multi-character jieba words
    containing CJK (frequency). Truncated to ``max_size``; ``min_count`` filters characters and
    words. Text is normalised as the tokenizer does (lower case, accents stripped, control
    characters removed) before counting, so every counted token is reachable.
    """
    _check_kind(kind)
    if max_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"max_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {max_size}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    split_cjk = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    keep_cjk = BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=None, lowercase=True)
    pre_tokenizer = BertPreTokenizer()
    jieba = None
    if kind == "roformer":
        import rjieba as jieba

    chars: collections.Counter = collections.Counter()
    pieces: collections.Counter = collections.Counter()
    words: collections.Counter = collections.Counter()
    count = 0
    for title in tqdm(titles, desc=f"{kind} vocabulary", unit=" titles", disable=None, mininterval=2.0):
        text = _as_text(title)
        count += 1
        if jieba is None:
            # BertTokenizer: CJK characters split apart, then whitespace/punctuation split.
            for word, _ in pre_tokenizer.pre_tokenize_str(split_cjk.normalize_str(text)):
                _count_pieces(word, chars, pieces)
        else:
            # RoFormerTokenizer (transformers' JiebaPreTokenizer): jieba words (hmm=False); a
            # word outside the vocabulary is re-split with CJK characters apart, then wordpieced.
            for token in jieba.cut(keep_cjk.normalize_str(text), False):
                if len(token) > 1 and any(_is_cjk(char) for char in token) and not any(c.isspace() for c in token):
                    words[token] += 1
                for part in split_cjk.normalize_str(token).split():
                    _count_pieces(part, chars, pieces)
    if count == 0:
        raise ValueError("build_vocab needs at least one title")

    vocab: list[str] = list(SPECIAL_TOKENS)
    seen = set(vocab)

    def extend(tokens: Iterable[str]) -> None:
        for token in tokens:
            if token not in seen:
                seen.add(token)
                vocab.append(token)

    ranked_chars = _ranked(chars, min_count)
    extend(ranked_chars)
    for char in ranked_chars:  # so that unseen words made of seen characters still spell out
        if char.isalnum() and not _is_cjk(char) and not unicodedata.category(char).startswith("P"):
            pieces["##" + char] += 0
    extend(_ranked(pieces, 0))
    extend(_ranked(words, min_count))
    vocab = vocab[:max_size]
    return _write_tokenizer_dir(vocab, out_dir, kind)


def _write_tokenizer_dir(vocab: Sequence[str], out_dir: str | os.PathLike, kind: str) -> str:
    """Write vocab.txt plus the files ``save_pretrained`` writes; each file lands atomically."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tokenizer.", dir=out_dir)
    try:
        vocab_path = os.path.join(staging, VOCAB_FILE)
        with open(vocab_path, "w", encoding="utf-8") as handle:
            handle.writelines(token + "\n" for token in vocab)
        tokenizer = _tokenizer_class(kind)(vocab_file=vocab_path, do_lower_case=True,
                                           model_max_length=MODEL_MAX_LENGTH)
        saved = os.path.join(staging, "saved")
        tokenizer.save_pretrained(saved)
        names = sorted(name for name in os.listdir(saved) if name != VOCAB_FILE)
        for name in names + [VOCAB_FILE]:  # vocab.txt last: its presence marks a complete dir
            os.replace(os.path.join(saved, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return os.path.join(out_dir, VOCAB_FILE)


def save_tokenizer(tokenizer, out_dir: str | os.PathLike) -> None:
    """``tokenizer.save_pretrained(out_dir)`` that leaves ``tokenizer`` as it was.

    transformers' ``RoFormerTokenizerFast.save_pretrained`` swaps the jieba pre-tokenizer for
    ``BertPreTokenizer`` (a Python pre-tokenizer cannot be serialised) and never puts it back: the
    same tokenizer then sends whole runs of Chinese text to WordPiece, which turns most of them into
    ``[UNK]``. The directory it writes is right (a reload gets jieba again); the live object is not.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre_tokenizer = backend.pre_tokenizer if backend is not None else None
    try:
        tokenizer.save_pretrained(os.fspath(out_dir))
    finally:
        if backend is not None:
            backend.pre_tokenizer = pre_tokenizer


def load_tokenizer(path_dir: str | os.PathLike, kind: str):
    """The fast tokenizer of ``kind`` from a local directory (never the network).

    Works with a directory written by ``build_vocab`` and with a downloaded checkpoint directory
    (``vocab.txt`` plus whatever tokenizer files it ships).
    """
    cls = _tokenizer_class(kind)
    path_dir = os.fspath(path_dir)
    if not os.path.isdir(path_dir):
        raise FileNotFoundError(f"{path_dir}: tokenizer directory does not exist")
    if not os.path.isfile(os.path.join(path_dir, VOCAB_FILE)):
        raise FileNotFoundError(
            f"{path_dir}: no {VOCAB_FILE} (expected a directory written by build_vocab or a "
            f"downloaded checkpoint such as hfl/chinese-roberta-wwm-ext)")
    return cls.from_pretrained(path_dir, local_files_only=True)


MISSING_ASR = "nan"  # how the official records spell a video without ASR text
TEXT_SOURCES = ("title", "title+asr")


def encode_titles(tokenizer, titles: Sequence[str | bytes], max_len: int = 32,
                  asr_texts: Sequence[str | bytes] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``([CLS] title [SEP])`` token ids and attention mask, truncated and padded to ``max_len``.

    Returns ``(input_ids, attention_mask)``, both int32 ``[len(titles), max_len]``. Bytes are
    decoded as UTF-8 (an invalid byte becomes U+FFFD rather than failing the batch).
    """
    if max_len < 2:
        raise ValueError(f"max_len must leave room for [CLS] and [SEP], got {max_len}")
    texts = [_as_text(title) for title in titles]
    if not texts:
        empty = np.zeros((0, max_len), dtype=np.int32)
        return empty, empty.copy()
    if asr_texts is not None:  # [CLS] title [SEP] asr [SEP]: the longer part is cut first
        if max_len < 3:  # the fast tokenizer would log an error and return the pair uncut
            raise ValueError(f"max_len must leave room for [CLS], [SEP] and [SEP] with ASR texts, got {max_len}")
        if len(asr_texts) != len(texts):
            raise ValueError(f"{len(texts)} titles but {len(asr_texts)} ASR texts")
        second = [_as_text(text)[: 2 * max_len] for text in asr_texts]
        second = ["" if text == MISSING_ASR else text for text in second]
        encoded = tokenizer(texts, second, max_length=max_len, truncation="longest_first", padding="max_length",
                            return_attention_mask=True, return_token_type_ids=False)
    else:
        encoded = tokenizer(texts, max_length=max_len, truncation=True, padding="max_length",
                            return_attention_mask=True, return_token_type_ids=False)
    input_ids = np.asarray(encoded["input_ids"], dtype=np.int32)
    attention_mask = np.asarray(encoded["attention_mask"], dtype=np.int32)
    return input_ids, attention_mask
