"""Sentiment v2's text features: a bag of words and word pairs that reads negation.

A bag of single words (v1) cannot see "not": "not good" is the bag {not, good}, and "good"
wins. Word pairs alone do not fix it either, because in long reviews "not bad" and "not great"
are as common in positive reviews as in negative ones. So the features build the rule in:

1. **Standardise**: lower case; contractions spelled out ("didn't" -> "did not", "won't" ->
   "wo not", also without the apostrophe: "didnt"); ``<br />`` and every run of punctuation
   becomes a clause boundary ``,`` (apostrophes and hyphens stay inside words).
2. **Negation scope**: the ``SCOPE`` words after a negator (not, no, never, nothing, hardly,
   ...) are negated, up to the next boundary. "not only", "not just", "no doubt" and "no
   wonder" negate nothing. Then the negators themselves are dropped: negative reviews use more
   of them, and kept, "not" alone would pull every negated phrase negative.
3. **Signed counts**: every word, and every pair of neighbouring words (never across a
   boundary), counts +1, or -1 when it is negated (a pair when its second word is). So "not
   bad" counts *against* "bad", and the weight the model learns for "bad" reads it the right
   way round, without having to learn "not bad" from long reviews where it means little.
4. **Weights**: ``sign(c) * log(1 + |c|)`` (repeats count less), times the term's inverse
   document frequency, the row scaled to unit length: a three-word phrase and a
   three-hundred-word review are on the same scale.

:class:`NegationBag` does it all in TensorFlow ops inside the exported graph, so the SavedModel
takes raw strings and training and serving cannot disagree. Only two regular expressions and
one string lookup per word run per review: scope, dropping and pairs are integer arithmetic on
word ids, which keeps a batch within twice v1's time. Feature ids: 0 unknown (weight 0), then
the words, then the word pairs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import pairwise

import keras
import numpy as np
import tensorflow as tf

SCOPE = 3  # words after a negator that it negates
NEGATORS = (
    "not", "no", "never", "nothing", "nobody", "none", "nor", "neither", "without", "hardly",
    "barely",
)  # fmt: skip
NOT_NEGATING = {"not": ("only", "just"), "no": ("doubt", "wonder")}  # "not only": no negation
BOUNDARY = ","
_AUXILIARIES = "do|does|did|is|are|was|were|have|has|had|would|could|should|must|need|wo|ca|ai"
_APOSTROPHES = "'\u2019"  # typed and typographic
_CONTRACTION = rf"\b({_AUXILIARIES})(?:n[{_APOSTROPHES}]?t|nnot)\b"
_PUNCTUATION = rf"<br\s*/?>|[^\pL\pN\s{_APOSTROPHES}-]+"


def standardize(texts: tf.Tensor) -> tf.Tensor:
    """Raw reviews -> words and ``,`` boundaries, separated by spaces (step 1)."""
    texts = tf.strings.lower(texts)
    texts = tf.strings.regex_replace(texts, _CONTRACTION, r"\1 not")
    return tf.strings.regex_replace(texts, _PUNCTUATION, f" {BOUNDARY} ")


def tokens(texts: list[str], batch_size: int = 1000) -> list[list[str]]:
    """Each review's tokens as :func:`standardize` and the graph's split make them."""
    out: list[list[str]] = []
    for start in range(0, len(texts), batch_size):
        split = tf.strings.split(standardize(tf.constant(texts[start : start + batch_size])))
        out += [[token.decode() for token in row] for row in split.to_list()]
    return out


def _without_negators(words: list[str]) -> list[str]:
    """The words that stay once negators are dropped (step 2), as the graph drops them."""
    kept = []
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else ""
        if word in NEGATORS and following not in NOT_NEGATING.get(word, ()):
            continue
        kept.append(word)
    return kept


def build_vocabulary(
    texts: list[str], max_words: int, max_pairs: int
) -> tuple[list[str], list[tuple[str, str]], np.ndarray]:
    """(words, pairs, idf): the terms found in most reviews, and each feature's IDF.

    Words are the ``max_words`` found in most reviews; pairs the ``max_pairs`` found in most
    reviews among those of two such words. Ties go alphabetically, so the same reviews always
    give the same vocabulary. The IDF is scikit-learn's smooth one, ``log((1 + n) / (1 + df))
    + 1``, in feature order (unknown: 0).
    """
    word_df: Counter[str] = Counter()
    pair_df: Counter[tuple[str, str]] = Counter()
    streams = [_without_negators(row) for row in tokens(texts)]
    for stream in streams:
        word_df.update({w for w in stream if w != BOUNDARY})
    words = [w for w, _ in sorted(word_df.items(), key=lambda i: (-i[1], i[0]))[:max_words]]
    known = set(words)
    for stream in streams:
        pair_df.update({(a, b) for a, b in pairwise(stream) if a in known and b in known})
    pairs = [p for p, _ in sorted(pair_df.items(), key=lambda i: (-i[1], i[0]))[:max_pairs]]
    df = np.array([word_df[w] for w in words] + [pair_df[p] for p in pairs], dtype=np.float64)
    idf = np.log((1 + len(texts)) / (1 + df)) + 1
    return words, pairs, np.concatenate([[0.0], idf]).astype(np.float32)


class NegationBag(keras.layers.Layer):
    """Raw strings -> ``tf.SparseTensor`` (batch, :attr:`size`) of signed, weighted terms."""

    def __init__(
        self,
        words: Iterable[str],
        pairs: Iterable[tuple[str, str]],
        idf: np.ndarray,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.words = list(words)
        self.pairs = list(pairs)
        n_words = len(self.words)
        self.size = 1 + n_words + len(self.pairs)
        if idf.shape != (self.size,):
            raise ValueError(f"idf has shape {idf.shape}; expected ({self.size},)")
        # Token ids: 0 unknown, 1..n_words the words, then the boundary and the negators that
        # are not words of the vocabulary. Every id past n_words weighs nothing.
        extra = [BOUNDARY, *(n for n in NEGATORS if n not in self.words)]
        extra += [w for ws in NOT_NEGATING.values() for w in ws if w not in self.words]
        table = [*self.words, *extra]
        self._token_ids = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(table), tf.range(1, len(table) + 1, dtype=tf.int64)
            ),
            default_value=0,
        )
        self._boundary = table.index(BOUNDARY) + 1
        # A negator's code (> 0), and the code of the words after which it negates nothing:
        # a token negates when its code is > 0 and differs from its successor's cancel code.
        negator_code = np.zeros(len(table) + 1, dtype=np.int32)
        cancel_code = np.full(len(table) + 1, -1, dtype=np.int32)
        for code, negator in enumerate(NEGATORS, start=1):
            negator_code[table.index(negator) + 1] = code
            for word in NOT_NEGATING.get(negator, ()):
                cancel_code[table.index(word) + 1] = code
        self._negator_code = tf.constant(negator_code)
        self._cancel_code = tf.constant(cancel_code)
        self._stride = len(table) + 1
        index = {w: i + 1 for i, w in enumerate(self.words)}
        pair_keys = [index[a] * self._stride + index[b] for a, b in self.pairs]
        self._pair_ids = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(pair_keys, dtype=tf.int64),
                tf.range(1 + n_words, self.size, dtype=tf.int64),
            ),
            default_value=0,
        )
        self._n_words = n_words
        self.idf = tf.constant(idf, dtype=tf.float32)

    def call(self, texts: tf.Tensor) -> tf.SparseTensor:
        # Every step works on the batch's tokens laid end to end (``rows`` says whose each
        # one is), never on a padded (batch, longest review) block ten times their size; and
        # in few operations, as each costs more in overhead than in arithmetic here.
        split = tf.strings.split(standardize(texts))
        ids = self._token_ids.lookup(split.flat_values)
        rows = split.value_rowids()
        first = _first_of_row(rows)

        # Step 2: negators (but "not only", ...), and the words each one negates.
        code = tf.gather(self._negator_code, ids)
        cancel = tf.gather(self._cancel_code, tf.roll(ids, -1, axis=0))
        negator = (code > 0) & ((code != cancel) | tf.roll(first, -1, axis=0))
        inside = ids != self._boundary
        reach = negator
        negated = tf.zeros_like(negator)
        for _ in range(SCOPE):
            reach = tf.roll(reach, 1, axis=0) & ~first & inside
            negated |= reach
        kept = ~negator
        ids = tf.boolean_mask(ids, kept)
        negated = tf.boolean_mask(negated, kept)
        rows = tf.boolean_mask(rows, kept)

        # Step 3: signed words and pairs, summed per review and term (``tf.unique`` on
        # review * size + term is cheaper here than ``tf.sparse.bincount``).
        sign = 1.0 - 2.0 * tf.cast(negated, tf.float32)
        word_ids = tf.where((ids > 0) & (ids <= self._n_words), ids, 0)
        before = tf.where(_first_of_row(rows), tf.zeros_like(word_ids), tf.roll(word_ids, 1, 0))
        pair_ids = self._pair_ids.lookup(before * self._stride + word_ids)
        pair_ids = tf.where((before > 0) & (word_ids > 0), pair_ids, 0)
        terms = tf.concat([word_ids, pair_ids], axis=0)
        found = terms > 0
        keys = tf.concat([rows, rows], axis=0) * self.size + terms
        keys, index = tf.unique(tf.boolean_mask(keys, found))
        weights = tf.boolean_mask(tf.concat([sign, sign], axis=0), found)
        sums = tf.math.unsorted_segment_sum(weights, index, tf.size(keys))
        rows, columns = keys // self.size, keys % self.size
        batch = tf.shape(texts, out_type=tf.int64)[0]

        # Step 4: sublinear, IDF, unit length.
        values = tf.sign(sums) * tf.math.log1p(tf.abs(sums)) * tf.gather(self.idf, columns)
        squares = tf.math.unsorted_segment_sum(tf.square(values), rows, num_segments=batch)
        values = tf.math.divide_no_nan(values, tf.sqrt(tf.gather(squares, rows)))
        # Entries in the order met, not sorted: the classifier's sparse product does not mind,
        # and sorting would cost a fifth of the call. tf.sparse.reorder sorts them if needed.
        return tf.SparseTensor(
            tf.stack([rows, columns], axis=1), values, tf.stack([batch, self.size])
        )


def _first_of_row(rows: tf.Tensor) -> tf.Tensor:
    """Whether each token is its review's first (``tf.roll`` brings in the previous one)."""
    position = tf.range(tf.size(rows, out_type=rows.dtype), dtype=rows.dtype)
    return (rows != tf.roll(rows, 1, axis=0)) | (position == 0)
