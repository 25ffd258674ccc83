"""The answer grammar: which option an answer names, and how a ground-truth letter is written.

The one reader of answers: the action parser stores its reading in `Answer.letter` (read without
the options), and the reward, the evaluation and the SFT checks read with the question's options,
which narrows the letter to their range and also matches an option's text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# A ground-truth (or annotated) answer given as a letter: `C`, `(C)`, `[C]` or `C.`.
_GROUND_TRUTH = re.compile(r"^\s*[(\[]?([A-Z])[)\].]?\s*$")
# After "the answer is" / "option" a letter may be followed by anything that is not a letter; bare, it
# must end the text or be followed by punctuation, so "I think B" is not read as option I.
# No two unbounded space runs touch, so a failed match backtracks in linear time, not cubic.
_LETTER = re.compile(r"^\s*(?:(?:(?:the\s+)?(?:answer|option)(?:\s+is)?(?:\s*[:\-]\s*|\s*))"
                     r"[(\[]?((?-i:[A-Z]))[)\]]?(?![A-Za-z])"
                     r"|[(\[]?((?-i:[A-Z]))[)\]]?(?=\s*$|[.,:;)\]]))", re.IGNORECASE)
# An answer whose words (after "the answer is") are only letters and these names several options: "A or B".
_HEDGE_WORDS = frozenset({"or", "and", "option", "options"})
_WORD = re.compile(r"[A-Za-z]+")
# No two unbounded space runs touch, so a failed match backtracks in linear time.
_ANSWER_PREFIX = re.compile(r"^\s*(?:the\s+)?answer(?:\s+is)?(?:\s*[:\-]\s*|\s*)", re.IGNORECASE)
_NOT_WORD = re.compile(r"[^\w]+")


def _normalise(text: str) -> str:
    """Text compared for option matching: lower case, punctuation dropped, single spaces."""
    return _NOT_WORD.sub(" ", text.casefold()).strip()


def _names_several_letters(text: str) -> bool:
    """Whether an answer lists two or more option letters and nothing else, e.g. `A or B`, `Answer: (A), (C)`."""
    words = _WORD.findall(_ANSWER_PREFIX.sub("", text, count=1))
    letters = {word for word in words if len(word) == 1 and word.isupper()}
    return len(letters) > 1 and all(word in letters or word.lower() in _HEDGE_WORDS for word in words)


def letter_form(text: str) -> str | None:
    """The letter of an answer spelled `B`, `B.`, `(B)`, `B. a dog` or `Option B`; None if it is not so spelled."""
    match = _LETTER.match(text)
    return (match.group(1) or match.group(2)) if match else None


def answer_option(text: str, options: Sequence[str] = ()) -> str | None:
    """The option letter an answer names (`B`, `(B)`, `B.`, `B. the red car`, `Answer: B`, or an option's text).

    None when it names several (`B or C`), none, or a letter beyond the options; without options any
    letter is in range and no text matches.
    """
    if _names_several_letters(text):
        return None
    letter = letter_form(text)
    if letter is not None:
        return letter if not options or LETTERS.index(letter) < len(options) else None
    wanted = _normalise(_ANSWER_PREFIX.sub("", text))
    matches = [LETTERS[i] for i, option in enumerate(options) if wanted and _normalise(option) == wanted]
    return matches[0] if len(matches) == 1 else None


def ground_truth_letter(text: object) -> str | None:
    """The letter of a ground truth written `C`, `(C)`, `[C]` or `C.`; None for anything else."""
    match = _GROUND_TRUTH.match(text) if isinstance(text, str) else None
    return match.group(1) if match else None
