"""Text metrics: strict and normalised exact match, ROUGE-L (LCS F-measure over normalised word tokens), copies.

Self-contained (no NLTK download) so that scoring works offline.

* ``strict_match``: case-sensitive exact match after trimming whitespace and one trailing period: the headline of
  short-answer tasks, since lower-casing would let an adapter that returns its input unchanged pass a task that asks
  for upper case.
* ``exact_match`` and ``rouge_l`` use SQuAD-style normalisation (lower case, no punctuation, no articles), so
  ROUGE-L here reads slightly higher than rouge-score's unnormalised ``rougeL``; ROUGE-L is the headline of
  long-form tasks only.
* ``is_copy``: the output is the input, whitespace aside (the copy rate of a report).
"""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


SHORT_ANSWER_WORDS = 5
"""Tasks whose references all have at most this many words are short-answer tasks (headline: strict match)."""


def strict_form(text: str) -> str:
    text = text.strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def strict_match(prediction: str, reference: str) -> float:
    return float(strict_form(prediction) == strict_form(reference))


def is_copy(prediction: str, source: str) -> float:
    return float(" ".join(prediction.split()) == " ".join(source.split()))


def near_copy(output: str, source: str, threshold: float = 0.9) -> bool:
    """Whether ``output`` is (nearly) ``source`` again, case-sensitively: the same words, or a word-level LCS F1
    of at least ``threshold`` (so upper-casing a word is not a copy, dropping one word of a sentence is)."""
    o, s = output.split(), source.split()
    if not o or not s:
        return False
    if o == s:
        return True
    lcs = _lcs(o, s)
    return lcs > 0 and 2 * lcs / (len(o) + len(s)) >= threshold


def is_short_answer(references: list[list[str]]) -> bool:
    return all(len(r.split()) <= SHORT_ANSWER_WORDS for refs in references for r in refs)


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def _lcs(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    p, r = normalize(prediction).split(), normalize(reference).split()
    lcs = _lcs(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)
