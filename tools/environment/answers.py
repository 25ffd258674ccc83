"""The answer grammar: which option an answer names, and how a ground-truth letter is written.

The one reader of answers: the action parser stores its reading in `Answer.letter` (read without
the options), and the reward, the tool, the evaluation and the SFT checks read with the question's
options, which narrows the letter to their range and also matches an option's text.

The rule, written here once. An answer names one option when it is, after an optional prefix
(`Answer:`, `The answer is`, `My/Final answer is`, `Option`, in any case), either
- a *letter form*: one letter in any case, optionally in brackets or quotes (`(B)`, `[b]`, `**B**`,
  `"B"`), followed by nothing, by punctuation or a line break and then any explanation (`B.`,
  `B) the red car`, `B: ...`); a bare letter followed by a space and a word is a letter form only after
  a prefix (`Option B the red car`), because `A red car` and `I think B` are English, and even then a
  lowercase `a` or `i` followed by a word is the article or the pronoun (`the answer is a dog`);
- or exactly one option's full text, compared without case, punctuation or extra spaces; it also wins
  over that weakest letter form, a bare letter and a word after a prefix (`Answer: A dog` is the
  option `a dog`), but not over a marked or punctuated letter (`A. dog` is A).
A letter form names several options, so no option, when what follows it starts with a joiner
(`or`, `and`, `nor`, `vs`, `/`, `&`, `+`, `|`: `B or C`, `B/C`, `B, or the red car`) or names another
letter anywhere (`B, or maybe C`, `B, C`, `B (not A)`). A letter is named where it stands alone: not
inside a word (`Bus`), an abbreviation (`e.g.`), a contraction (`don't`) or a hyphenated word
(`T-shirt`); and `a`/`A`/`i`/`I` followed by a word other than a joiner is the article or the pronoun
(`B. A man opens the door`), not option A or I. Anything else (`either A or B`, `I think B`, an unknown
text) names no option. So an explanation that itself names a second letter (`B. vitamin C`) reads as
no option: a hedge must never be paid, and a clear answer needs no second letter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# A ground-truth (or annotated) answer given as a letter: `C`, `(C)`, `[C]` or `C.`.
_GROUND_TRUTH = re.compile(r"^\s*[(\[]?([A-Z])[)\].]?\s*$")
# The optional prefix before the answer proper. Each space run is followed by a literal, so a failed
# optional part backtracks in linear time.
_PREFIX = re.compile(r"\s*(?:(?P<answer>(?:(?:the|my|final)\s+)?answer(?:\s+is)?\b(?:\s*:)?\s*(?:-\s*)?)"
                     r"(?P<option>(?:the\s+)?options?\b(?:\s*[:\-])?\s*)?"
                     r"|(?P<option_only>(?:the\s+)?options?\b(?:\s*[:\-])?\s*))?", re.IGNORECASE)
# A letter form's opening and closing marks: brackets, quotes and markdown emphasis.
_OPEN = re.compile(r"[(\[{*\"'“‘]{0,3}")
_CLOSE = re.compile(r"[)\]}*\"'”’]{0,3}")
_LETTER = re.compile(r"[A-Za-z]")
# A letter standing alone: not inside a word, an abbreviation (e.g.), a contraction (don't) or T-shirt.
_STANDALONE = re.compile(r"(?<!\w)(?<!\w[.'’])([A-Za-z])(?!\w)(?![.'’]\w)(?!-\w\w)")
# Words that join two options into a hedge, and the marks that do the same.
_JOINERS = ("or", "and", "nor", "vs", "versus")
_JOINER = re.compile(r"[\s,;]*(?:(?:" + "|".join(_JOINERS) + r")\b|[/&+|])", re.IGNORECASE)
# What follows a letter that is the article, the pronoun or a letter followed by a word: a word that is not a joiner.
_WORD_AFTER = re.compile(r"[ \t]+(?!(?:" + "|".join(_JOINERS) + r")\b)\w", re.IGNORECASE)
# A bare letter followed by a space and a word (`B a dog`, `B or C`); spaces then a line break are not a word.
_SPACE_THEN_WORD = re.compile(r"[ \t]+\w")
_NOT_WORD = re.compile(r"[^\w]+")


def _normalise(text: str) -> str:
    """Text compared for option matching: lower case, punctuation dropped, single spaces."""
    return _NOT_WORD.sub(" ", text.casefold()).strip()


def _names_letter(text: str, at: int, letter: str) -> bool:
    """Whether the standalone `letter` at `text[at]` names an option (not the article `a` or the pronoun `i`)."""
    return letter.lower() not in "ai" or _WORD_AFTER.match(text, at + 1) is None


def _names_another_letter(text: str, start: int, letter: str) -> bool:
    """Whether `text[start:]` names an option letter other than `letter`, or begins with a joiner."""
    if _JOINER.match(text, start):
        return True
    for match in _STANDALONE.finditer(text, start):
        found = match.group(1)
        if found.upper() != letter and _names_letter(text, match.start(1), found):
            return True
    return False


def _read_letter(text: str) -> tuple[str | None, bool]:
    """The letter of a letter form (None if there is none or it names several) and whether it is the weak form, a
    bare letter followed by a word after a prefix (`Answer: A dog`), which an option's full text overrides."""
    prefix = _PREFIX.match(text)
    after_prefix = prefix.group("answer") or prefix.group("option") or prefix.group("option_only")
    opened = _OPEN.match(text, prefix.end())
    at = opened.end()
    if _LETTER.match(text, at) is None or not _STANDALONE.match(text, at):
        return None, False
    letter = text[at].upper()
    closed = _CLOSE.match(text, at + 1)
    weak = not opened.group() and not closed.group() and _SPACE_THEN_WORD.match(text, at + 1) is not None
    # `B a dog`, `A red car`, `I think B`: English, unless a prefix says a letter comes (`Option B the car`),
    # and even then a lowercase `a` or `i` before a word is the article or the pronoun.
    if weak and (not after_prefix or text[at] in "ai"):
        return None, False
    return (None if _names_another_letter(text, closed.end(), letter) else letter), weak


def letter_form(text: str) -> str | None:
    """The letter of an answer in a letter form (`B`, `b.`, `(B)`, `B. a dog`, `Option B`); None otherwise or if it
    names several letters (the rule is in this module's docstring)."""
    return _read_letter(text)[0]


def _text_option(text: str, options: Sequence[str]) -> str | None:
    """The letter of the one option whose full text the answer is (with or without its prefix); None otherwise."""
    forms = {_normalise(text), _normalise(text[_PREFIX.match(text).end():])} - {""}
    matches = {LETTERS[i] for i, option in enumerate(options[:len(LETTERS)]) if _normalise(option) in forms}
    return matches.pop() if len(matches) == 1 else None


def answer_option(text: str, options: Sequence[str] = ()) -> str | None:
    """The option letter an answer names (`B`, `(b)`, `B.`, `B. the red car`, `Answer: B`, or an option's text).

    None when it names several (`B or C`, `B, or maybe C`), none, or a letter beyond the options; without
    options any letter is in range and no text matches. The rule is in this module's docstring.
    """
    letter, weak = _read_letter(text)
    if letter is None or weak:
        by_text = _text_option(text, options)
        if by_text is not None or letter is None:
            return by_text
    return letter if not options or LETTERS.index(letter) < len(options) else None


def ground_truth_letter(text: object) -> str | None:
    """The letter of a ground truth written `C`, `(C)`, `[C]` or `C.`; None for anything else."""
    match = _GROUND_TRUTH.match(text) if isinstance(text, str) else None
    return match.group(1) if match else None
