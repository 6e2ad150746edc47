"""A rough guess of a task's language, recorded in the library (``Task.language``) so that benchmarks can ask for
English tasks. No model: a language named in the task's name (conservative: ``chinese_zodiac``, asked in English,
counts as Chinese), else the script of its letters, else English function words for Latin-script text.

``guess_language(name, texts) -> str``: an ISO 639-1 code where it can tell (``en``, ``zh``, ``ru``, ...), or
``"xx-latin"`` / ``"xx-<script>"`` for a non-English text it cannot name.
"""

from __future__ import annotations

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
    "kannada": "kn", "telugu": "te", "marathi": "mr", "gujarati": "gu", "punjabi": "pa",
    "nepali": "ne", "sinhala": "si", "yoruba": "yo", "zulu": "zu", "xhosa": "xh", "amharic": "am",
    "tagalog": "tl", "filipino": "tl", "basque": "eu", "galician": "gl", "welsh": "cy", "irish": "ga",
    "esperanto": "eo", "cantonese": "zh", "canto": "zh", "mandarin": "zh",
    "hinglish": "hi", "kiswahili": "sw", "farsi": "fa", "parsinlu": "fa", 
}
SCRIPTS = {"CJK": "zh", "HIRAGANA": "ja", "KATAKANA": "ja", "HANGUL": "ko", "CYRILLIC": "xx-cyrillic",
           "ARABIC": "xx-arabic", "DEVANAGARI": "xx-devanagari", "GREEK": "el", "HEBREW": "he", "THAI": "th",
           "BENGALI": "bn", "TAMIL": "ta", "TELUGU": "te", "GEORGIAN": "ka", "ARMENIAN": "hy"}
ENGLISH_WORDS = frozenset(
    "the of and to a in is you that for with this are be on it as or will your what which an by from not "
    "answer given following each if one word question sentence text output input".split())
ENGLISH_SHARE = 0.15
"""Share of English function words above which Latin-script text counts as English (English prose: ~0.3)."""
_TOKEN = re.compile(r"[a-z]+")


def _script(ch: str) -> str:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return "?"
    return name.split(" ")[0]


def guess_language(name: str, texts: Iterable[str]) -> str:
    """The language of a task named ``name`` whose instruction and samples are ``texts``."""
    for part in re.split(r"[^a-z]+", name.lower()):
        if part in NAMED:
            return NAMED[part]
    text = " ".join(texts)
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "en"
    foreign = Counter(_script(c) for c in letters if not c.isascii())
    if foreign and sum(foreign.values()) > 0.2 * len(letters):
        script = foreign.most_common(1)[0][0]
        return SCRIPTS.get(script, "xx-latin" if script == "LATIN" else f"xx-{script.lower()}")
    words = _TOKEN.findall(text.lower())
    if len(words) < 20:
        return "en"
    share = sum(w in ENGLISH_WORDS for w in words) / len(words)
    return "en" if share >= ENGLISH_SHARE else "xx-latin"
