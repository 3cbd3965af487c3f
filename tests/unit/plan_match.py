"""Is every state-changing statement or command a run sent shown in the plan printed before?

The plan's JSON (``harestart plan --format json``) says what each action does in its ``do``
text, every statement and command quoted in backticks, on its host (a hook, run on the
bastion: ``runs_on: bastion``, recorded as sent to the host ``bastion``); text in ``<...>`` is
filled in at run time and matches anything. Numbers are compared as numbers (pymysql sends
``0.0e0`` for the plan's ``0``). Shared by the unit test (fakes) and the integration test (a
real lab run). The JSON keeps its content whatever the text view prints for people.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

BASTION = "bastion"  # where hooks run
_QUOTED = re.compile(r"`([^`]+)`")
_PLACEHOLDER = re.compile(r"<[^>]*>")
_NUMBER = re.compile(r"(?<![\w.])\d+\.\d+(?:e[+-]?\d+)?(?![\w.])")
# Where a step's JSON lists actions: what it does, once its checks held, and at its end.
_PARTS = ("actions", "actions_after_checks", "cleanup")

# Commands and statements that only look (never change anything).
_READS = (
    "SELECT",
    "SHOW",
    "masterha_check_status",
    "masterha_check_repl",
    "tail ",
    "true",
    "my_print_defaults",
    "test -d /proc/",  # is the MHA manager harestart started still alive
)


def normalise(text: str) -> str:
    text = " ".join(text.split())
    return _NUMBER.sub(lambda m: f"{float(m.group(0)):g}", text)


def changes_state(statement: str) -> bool:
    return not normalise(statement).upper().startswith(tuple(r.upper() for r in _READS))


def plan_actions(plans: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(host, ``do`` text) of every action of the plans' JSON (a hook's host: the bastion)."""
    out = []
    for plan in plans:
        for step in plan["steps"]:
            for part in _PARTS:
                for act in step.get(part, ()):
                    host = BASTION if act.get("runs_on") == BASTION else act["host"]
                    out.append((host, act["do"]))
    return out


def plan_templates(plans: Iterable[Mapping[str, Any]]) -> dict[str, list[re.Pattern[str]]]:
    """Per host, a regular expression for every quoted statement or command of the plans."""
    out: dict[str, list[re.Pattern[str]]] = defaultdict(list)
    for host, text in plan_actions(plans):
        for quoted in _QUOTED.findall(text):
            parts = _PLACEHOLDER.split(normalise(quoted))
            out[host].append(re.compile(".+?".join(re.escape(p) for p in parts)))
    return out


def missing_from_plan(
    plans: Iterable[Mapping[str, Any]], sent: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The state-changing (host, statement) pairs of ``sent`` that the plans do not show."""
    templates = plan_templates(plans)
    return [
        (host, statement)
        for host, statement in sent
        if changes_state(statement)
        and not any(t.fullmatch(normalise(statement)) for t in templates.get(host, []))
    ]
