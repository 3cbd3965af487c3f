"""Is every state-changing statement or command a run sent shown in the plan printed before?

The plan's text quotes every statement and command in backticks on its ``do:`` and
``finally:`` lines (``on HOST: ...``; a hook, run on the bastion: ``hook POINT: `command```,
recorded as sent to the host ``bastion``); text in ``<...>`` is filled in at run time and
matches anything. Numbers are compared as numbers (pymysql sends ``0.0e0`` for the plan's ``0``).
Shared by the unit test (fakes) and the integration test (a real lab run).
"""

from __future__ import annotations

import re
from collections import defaultdict

_LINE = re.compile(r"^\s*(?:do|finally): on (\S+): (.*)$")
_HOOK_LINE = re.compile(r"^\s*(?:do|finally): hook \S+: (`[^`]+`)")
BASTION = "bastion"  # where hooks run
_QUOTED = re.compile(r"`([^`]+)`")
_PLACEHOLDER = re.compile(r"<[^>]*>")
_NUMBER = re.compile(r"(?<![\w.])\d+\.\d+(?:e[+-]?\d+)?(?![\w.])")

# Commands and statements that only look (never change anything).
_READS = (
    "SELECT",
    "SHOW",
    "masterha_check_status",
    "masterha_check_repl",
    "tail ",
    "true",
    "my_print_defaults",
)


def normalise(text: str) -> str:
    text = " ".join(text.split())
    return _NUMBER.sub(lambda m: f"{float(m.group(0)):g}", text)


def changes_state(statement: str) -> bool:
    return not normalise(statement).upper().startswith(tuple(r.upper() for r in _READS))


def plan_templates(plan_text: str) -> dict[str, list[re.Pattern[str]]]:
    """Per host, a regular expression for every quoted statement or command of the plan."""
    out: dict[str, list[re.Pattern[str]]] = defaultdict(list)
    for line in plan_text.splitlines():
        m = _LINE.match(line)
        hook = _HOOK_LINE.match(line)
        if m:
            host, text = m.group(1), m.group(2)
        elif hook:
            host, text = BASTION, hook.group(1)
        else:
            continue
        for quoted in _QUOTED.findall(text):
            parts = _PLACEHOLDER.split(normalise(quoted))
            out[host].append(re.compile(".+?".join(re.escape(p) for p in parts)))
    return out


def missing_from_plan(plan_text: str, sent: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The state-changing (host, statement) pairs of ``sent`` that the plan does not show."""
    templates = plan_templates(plan_text)
    return [
        (host, statement)
        for host, statement in sent
        if changes_state(statement)
        and not any(t.fullmatch(normalise(statement)) for t in templates.get(host, []))
    ]
