"""The answer rule over generated phrasings: one option named in any spelling reads as it, a hedge reads as none.

Answers are composed from prefixes, brackets, letter case, suffixes, explanations and option texts
(single answers) and from joiners between two or three letters (hedges), so the rule of
tools/environment/answers.py is checked over a family of phrasings, not a list of strings.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tools.environment.actions import parse_turn
from tools.environment.answers import LETTERS, answer_option, letter_form

PHRASINGS = settings(deadline=None, max_examples=400, derandomize=True)
# Words of two letters or more that are not joiners: option texts and explanations are made of them.
WORDS = ("red", "car", "dog", "cat", "man", "door", "opens", "blue", "hat", "the", "kitchen", "running", "two",
         "people", "it", "is", "because", "in", "scene", "wears", "T-shirt", "e.g.", "don't", "video")
PREFIXES = ("", "Answer: ", "answer:", "ANSWER - ", "The answer is ", "the answer is: ", "My answer is ",
            "Final answer: ", "Option ", "option ", "The answer is option ", "Answer: Option ", "  ")
MARKS = (("", ""), ("(", ")"), ("[", "]"), ("{", "}"), ("**", "**"), ('"', '"'), ("'", "'"), ("", ")"),
         ("(", ""), ("**(", ")**"))
JOINERS = (" or ", ", or ", ", or maybe ", " or perhaps ", " and ", ", and ", ", ", ",", "/", " / ", " & ", "+",
           " | ", " vs ", "; or ", " nor ", " ")
WRAPPERS = ("{}", "either {}", "Either {}", "both {}", "maybe {}", "I think {}", "{}, not sure", "{}?")


def words(min_size: int = 1, max_size: int = 4) -> st.SearchStrategy[str]:
    """A phrase of vocabulary words, maybe opening with the article `a` (never a lone letter otherwise)."""
    phrase = st.lists(st.sampled_from(WORDS), min_size=min_size, max_size=max_size).map(" ".join)
    return st.tuples(st.sampled_from(("", "a ", "A ")), phrase).map("".join)


# 2 to 8 options with different texts (after case and punctuation are dropped).
OPTIONS = st.lists(words(), min_size=2, max_size=8, unique_by=lambda text: text.casefold().replace(".", ""))


def cased(draw: st.DrawFn, letter: str) -> str:
    """`letter` in upper or lower case."""
    return draw(st.sampled_from((letter, letter.lower())))


@st.composite
def single_letter_answers(draw: st.DrawFn) -> tuple[list[str], str, str]:
    """(options, letter, answer) where the answer names only that option's letter, spelled any supported way."""
    options = draw(OPTIONS)
    letter = LETTERS[draw(st.integers(0, len(options) - 1))]
    written = cased(draw, letter)
    prefix = draw(st.sampled_from(PREFIXES))
    opening, closing = draw(st.sampled_from(MARKS))
    explanation = draw(st.sampled_from(("", options[LETTERS.index(letter)])) | words(1, 6))
    separators = [".", "!", ":", " -", ".\n", "\n"] if explanation else ["", ".", "!", "?", ":", ")", "\n", " "]
    # A bare letter and a word is a letter form only after a prefix; `a`/`i` would be the article or the
    # pronoun, and `A dog` could be an option's text.
    if opening + closing or (prefix.strip() and written not in "aiAI"):
        separators.append(" ")
    separator = draw(st.sampled_from(separators))
    space = " " if explanation and not separator.endswith(("\n", " ")) else ""
    return options, letter, f"{prefix}{opening}{written}{closing}{separator}{space}{explanation}"


@st.composite
def option_text_answers(draw: st.DrawFn) -> tuple[list[str], str, str]:
    """(options, letter, answer) where the answer is that option's full text, in any case, maybe after a prefix."""
    options = draw(OPTIONS)
    index = draw(st.integers(0, len(options) - 1))
    text = draw(st.sampled_from((str.lower, str.upper, str.title, str.capitalize, str)))(options[index])
    prefix = draw(st.sampled_from(("", "Answer: ", "The answer is ", "answer - ")))
    return options, LETTERS[index], f"{prefix}{text}{draw(st.sampled_from(('', '.', '!', ' ')))}"


@st.composite
def hedged_answers(draw: st.DrawFn) -> tuple[list[str], str]:
    """(options, answer) where the answer lists or hedges between two or three different letters."""
    options = draw(OPTIONS)
    count = draw(st.integers(2, 3))
    letters = draw(st.lists(st.sampled_from(LETTERS[:8]), min_size=count, max_size=count, unique=True))
    parts = []
    for letter in letters:
        opening, closing = draw(st.sampled_from(MARKS[:7]))
        parts.append(f"{opening}{cased(draw, letter)}{closing}")
    joined = parts[0]
    for part in parts[1:]:
        joined += draw(st.sampled_from(JOINERS)) + part
    if draw(st.booleans()):
        # An explanation may follow the hedge.
        joined += draw(st.sampled_from((". ", ", ", "\n"))) + draw(words())
    prefix = draw(st.sampled_from(PREFIXES))
    return options, prefix + draw(st.sampled_from(WRAPPERS)).format(joined)


@st.composite
def letter_then_option_text(draw: st.DrawFn) -> tuple[list[str], str]:
    """(options, answer) hedging between a letter and another option's text: `B, or the red car`."""
    options = draw(OPTIONS)
    letter = cased(draw, LETTERS[draw(st.integers(0, len(options) - 1))])
    other = draw(st.sampled_from(options))
    return options, f"{letter}{draw(st.sampled_from((' or ', ', or ', ' / ', ' and ', ', or maybe ')))}{other}"


@PHRASINGS
@given(single_letter_answers())
@example((["a dog", "the red car"], "A", "A. red car"))
@example((["a dog", "the red car"], "B", "B. A man opens the door"))
@example((["a dog", "the red car"], "B", "Option B the red car"))
def test_one_letter_in_any_spelling_reads_as_that_option(case: tuple[list[str], str, str]) -> None:
    """Prefix, brackets, case, punctuation and an explanation never change which option a lone letter names."""
    options, letter, answer = case
    assert answer_option(answer, options) == letter, answer
    assert letter_form(answer) == letter, answer


@PHRASINGS
@given(option_text_answers())
@example((["a dog", "the red car"], "A", "Answer: A dog"))
@example((["a dog", "a cat"], "B", "A CAT"))
def test_an_options_full_text_reads_as_that_option(case: tuple[list[str], str, str]) -> None:
    """An option's text, in any case and after a prefix, names that option (even when it starts with `a`)."""
    options, letter, answer = case
    assert answer_option(answer, options) == letter, answer


@PHRASINGS
@given(hedged_answers())
@example((["a dog", "the red car", "a cat"], "B, or maybe C"))
@example((["a dog", "the red car", "a cat"], "either A or B"))
@example((["a dog", "the red car", "a cat"], "a or b"))
@example((["a dog", "the red car", "a cat"], "B, a"))
def test_a_hedge_between_letters_reads_as_no_option(case: tuple[list[str], str]) -> None:
    """Two or three letters joined in any way, with any prefix, marks or case, name no option."""
    options, answer = case
    assert answer_option(answer, options) is None, answer
    assert answer_option(answer) is None, answer
    assert letter_form(answer) is None, answer


@PHRASINGS
@given(letter_then_option_text())
def test_a_hedge_between_a_letter_and_a_text_reads_as_no_option(case: tuple[list[str], str]) -> None:
    """`B, or the red car` hedges as well, whichever option the text is."""
    options, answer = case
    assert answer_option(answer, options) is None, answer


@PHRASINGS
@given(OPTIONS, words(1, 4))
def test_the_article_is_not_option_a(options: list[str], phrase: str) -> None:
    """`a car` or `A red car` that is no option's text names no option; `A. red car` names A."""
    text = "a " + phrase.removeprefix("a ").removeprefix("A ")
    for spelled in (text, text.capitalize()):
        expected = next((LETTERS[i] for i, option in enumerate(options)
                         if option.casefold().replace(".", "") == spelled.casefold().replace(".", "")), None)
        assert answer_option(spelled, options) == expected, spelled
    assert answer_option("A. " + phrase, options) == "A"


@PHRASINGS
@given(st.one_of(single_letter_answers().map(lambda case: case[2]), hedged_answers().map(lambda case: case[1]),
                 st.text(max_size=30)))
def test_the_stored_letter_is_the_readers_reading_without_options(answer: str) -> None:
    """Answer.letter, stored in every trajectory, is answer_option's reading without the options."""
    turn = parse_turn(f"<think>t</think><answer>{answer}</answer>")
    if turn.action is not None:
        assert turn.action.letter == answer_option(turn.action.text)
