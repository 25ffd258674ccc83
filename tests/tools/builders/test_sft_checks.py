"""The role-order check mirrors LLaMA-Factory's sharegpt converter: what it skips, we refuse, and nothing else.

Every case is also fed to LLaMA-Factory's own `SharegptDatasetConverter` (with the tags our builders
register), so the table cannot drift from the rule it mirrors.
"""

from __future__ import annotations

import pytest

from tools.builders.sft_checks import check_role_order
from tools.builders.sft_format import TAGS, sharegpt_sample


def conversation(*roles: str) -> list[dict]:
    """Messages with the given `from` tags and placeholder text."""
    return [{"from": role, "value": f"text {position}"} for position, role in enumerate(roles)]


ROLE_ORDERS = {
    # name: (messages, phrase of the problem, or None when LLaMA-Factory trains the sample)
    "user_observation_role": (sharegpt_sample("sys", "q", [("call", "seen"), ("answer", None)], "user")["messages"],
                              None),
    "tool_observation_role": (sharegpt_sample("sys", "q", [("call", "seen"), ("answer", None)], "tool")["messages"],
                              None),
    "no_system_prompt": (conversation("human", "gpt"), None),
    "function_call_turn": (conversation("system", "human", "function_call", "observation", "gpt"), None),
    "two_user_turns_in_a_row": (conversation("system", "human", "human", "gpt"),
                                "message 2 is 'human' where LLaMA-Factory expects one of ['gpt', 'function_call']"),
    "assistant_first": (conversation("gpt", "human"),
                        "message 0 is 'gpt' where LLaMA-Factory expects one of ['human', 'observation']"),
    "observation_after_observation": (conversation("system", "human", "gpt", "observation", "observation", "gpt"),
                                      "message 4 is 'observation' where LLaMA-Factory expects one of"),
    "function_call_where_user_speaks": (conversation("system", "function_call", "gpt"), "message 1 is 'function_call'"),
    "unknown_role": (conversation("system", "human", "assistant"), "message 2 is 'assistant'"),
    "second_system_message": (conversation("system", "system", "gpt"), "message 1 is 'system'"),
    "ends_with_an_observation": (conversation("system", "human", "gpt", "observation"),
                                 "3 messages after the system prompt"),
    "system_only": (conversation("system"), "0 messages after the system prompt"),
}


@pytest.mark.parametrize("case", list(ROLE_ORDERS))
def test_role_order_is_refused_with_the_reason(case: str) -> None:
    """A sample LLaMA-Factory would skip is refused naming the message and what was expected; the others pass."""
    messages, phrase = ROLE_ORDERS[case]
    problem = check_role_order(messages, TAGS)
    if phrase is None:
        assert problem is None
    else:
        assert problem is not None and phrase in problem, problem


@pytest.mark.parametrize("case", list(ROLE_ORDERS))
def test_llamafactory_skips_exactly_what_we_refuse(case: str) -> None:
    """LLaMA-Factory's converter (and its supervised processor's count rule) keeps a case iff the check passes it."""
    from llamafactory.data.converter import SharegptDatasetConverter
    from llamafactory.data.parser import DatasetAttr

    attr = DatasetAttr("file", "case", formatting="sharegpt")
    attr.messages = "messages"
    for key, value in TAGS.items():
        setattr(attr, key, value)
    converted = SharegptDatasetConverter(attr, None)({"messages": ROLE_ORDERS[case][0]})
    # The supervised processor drops an example unless its prompt is odd and it has one response.
    kept = len(converted["_prompt"]) % 2 == 1 and len(converted["_response"]) == 1
    assert kept == (check_role_order(ROLE_ORDERS[case][0], TAGS) is None)


@pytest.mark.parametrize(("messages", "phrase"), [
    ("not a list", "expected a list of messages"),
    ([{"from": "human"}], "message 0: expected an object with string 'from' and 'value'"),
    ([["human", "q"]], "message 0: expected an object"),
])
def test_malformed_messages_are_named(messages: object, phrase: str) -> None:
    """Messages that are not tagged objects (LLaMA-Factory would raise a KeyError) are refused by position."""
    assert phrase in check_role_order(messages)
