"""A rough guess of a task's language, recorded in the library (``Task.language``) so that benchmarks can ask for
English tasks. No language model: in order,

1. a language named in the task's name (conservative: ``chinese_zodiac``, asked in English, counts as Chinese);
2. the script of its letters, when over a fifth of them are not ASCII (``zh``, ``ko``, ``xx-cyrillic``, ...);
3. for Latin script, English when the samples' words (three letters or more) are mostly whole words of an English
   vocabulary (the bundled MiniLM encoder's WordPiece vocabulary, ~21k words) or hold enough English function
   words; with too few words in the samples (symbols, numbers, codes), the same test on the task's instruction.

``guess_language(name, texts) -> str``: an ISO 639-1 code where it can tell (``en``, ``zh``, ``ru``, ...), or
``"xx-latin"`` / ``"xx-<script>"`` for a non-English text it cannot name. Not a language identifier: English tasks
with many rare words (``word_sorting``) can come out as ``xx-latin``; the benchmark that filters on ``en`` only
loses tasks by that, it does not gain foreign ones.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

# Language names that eval/task names carry (``belarusian-lexicon``, ``german-part-of-speech``).
NAMED = {
    "afrikaans": "af", "albanian": "sq", "arabic": "ar", "belarusian": "be", "bengali": "bn", "brazilian": "pt",
    "bulgarian": "bg", "catalan": "ca", "chinese": "zh", "croatian": "hr", "czech": "cs", "danish": "da",
    "dutch": "nl", "estonian": "et", "finnish": "fi", "french": "fr", "german": "de", "greek": "el",
    "hebrew": "he", "hindi": "hi", "hungarian": "hu", "icelandic": "is", "indonesian": "id", "italian": "it",
    "japanese": "ja", "korean": "ko", "latvian": "lv", "lithuanian": "lt", "malay": "ms", "norwegian": "no",
    "persian": "fa", "polish": "pl", "portuguese": "pt", "romanian": "ro", "russian": "ru", "serbian": "sr",
    "slovak": "sk", "slovenian": "sl", "spanish": "es", "swahili": "sw", "swedish": "sv", "tamil": "ta",
    "thai": "th", "turkish": "tr", "ukrainian": "uk", "ukraine": "uk", "urdu": "ur", "vietnamese": "vi",
    "kannada": "kn", "telugu": "te", "marathi": "mr", "gujarati": "gu", "punjabi": "pa", "nepali": "ne",
    "sinhala": "si", "yoruba": "yo", "zulu": "zu", "xhosa": "xh", "amharic": "am", "tagalog": "tl",
    "filipino": "tl", "basque": "eu", "galician": "gl", "welsh": "cy", "irish": "ga", "esperanto": "eo",
    "cantonese": "zh", "canto": "zh", "mandarin": "zh", "hinglish": "hi", "kiswahili": "sw", "farsi": "fa",
    "parsinlu": "fa",
}
SCRIPTS = {"CJK": "zh", "HIRAGANA": "ja", "KATAKANA": "ja", "HANGUL": "ko", "CYRILLIC": "xx-cyrillic",
           "ARABIC": "xx-arabic", "DEVANAGARI": "xx-devanagari", "GREEK": "el", "HEBREW": "he", "THAI": "th",
           "BENGALI": "bn", "TAMIL": "ta", "TELUGU": "te", "GEORGIAN": "ka", "ARMENIAN": "hy"}
CONTENT_SHARE = 0.7
"""Share of the samples' words found in the English vocabulary above which they are English (English: 0.75-1.0;
Spanish, Dutch or Polish text: 0.15-0.35)."""
INSTRUCTION_SHARE = 0.8
"""The same for an instruction, which is plain prose."""
MIN_WORDS = 30
"""Sample words needed to judge the samples by themselves."""
_TOKEN = re.compile(r"[a-z]+")
log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def english_vocabulary() -> frozenset[str]:
    """Whole ASCII words (two letters or more) of the bundled MiniLM encoder's uncased WordPiece vocabulary."""
    from text2lora.errors import Text2LoraError
    from text2lora.models.bundled import BUNDLED_ENCODER, resolve_model

    try:
        with open(f"{resolve_model(BUNDLED_ENCODER)}/vocab.txt", encoding="utf-8") as f:
            return frozenset(w for w in (line.strip() for line in f) if len(w) > 1 and w.isascii() and w.isalpha())
    except (Text2LoraError, OSError) as e:  # the encoder package is not installed: function words alone decide
        log.warning("language guesses without the English vocabulary (%s)", e)
        return frozenset()


def _script(ch: str) -> str:
    try:
        return unicodedata.name(ch).split(" ")[0]
    except ValueError:
        return "?"


FUNCTION_WORDS = frozenset(
    "the of and to in is you that for with this are be on it as or will your what which an by from not if".split())
FUNCTION_SHARE = 0.08
"""Or: share of English function words among all words above which a text is English (English prose: ~0.3;
technical English with words the vocabulary splits into pieces still has them)."""


def _is_english(text: str, vocabulary: frozenset[str], share_needed: float) -> tuple[bool, int]:
    """Whether ``text`` reads as English, and how many words (three letters or more) that was judged on."""
    tokens = _TOKEN.findall(text.lower())
    words = [w for w in tokens if len(w) > 2]
    if not words:
        return True, 0
    in_vocab = sum(w in vocabulary for w in words) / len(words)
    function = sum(w in FUNCTION_WORDS for w in tokens) / len(tokens)
    return in_vocab >= share_needed or function >= FUNCTION_SHARE, len(words)


def guess_language(name: str, texts: Iterable[str], vocabulary: frozenset[str] | None = None) -> str:
    """The language of a task named ``name``: ``texts[0]`` is its instruction, the rest its samples."""
    for part in re.split(r"[^a-z]+", name.lower()):
        if part in NAMED:
            return NAMED[part]
    texts = list(texts)
    letters = [c for c in " ".join(texts) if c.isalpha()]
    foreign = Counter(_script(c) for c in letters if not c.isascii())
    if foreign and sum(foreign.values()) > 0.2 * len(letters):
        script = foreign.most_common(1)[0][0]
        return SCRIPTS.get(script, "xx-latin" if script == "LATIN" else f"xx-{script.lower()}")
    vocabulary = english_vocabulary() if vocabulary is None else vocabulary
    english, n = _is_english(" ".join(texts[1:]), vocabulary, CONTENT_SHARE)
    if n < MIN_WORDS:
        english, _ = _is_english(texts[0] if texts else "", vocabulary, INSTRUCTION_SHARE)
    return "en" if english else "xx-latin"
