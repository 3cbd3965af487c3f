"""Pending restarts, per node: pure data and the one judge (issue #23).

Modules: ``model`` (the reasons and a node's report), ``values`` (normalising a value as mysqld
reads it), ``options`` (the configuration mysqld would start with), ``settings`` (what the
server says about its variables, and the statements that ask), ``mysql_static`` (MySQL's
read-only variables, which it does not expose), ``host`` (the one command run on the host and
its parser), ``judge`` (``judge_pending``: all of it compared). The engine reads
(``harestart.engine.pending``); views render the report.
"""

from harestart.domain.pending.host import HostFacts, host_script, option_groups, parse_host_facts
from harestart.domain.pending.judge import judge_pending
from harestart.domain.pending.model import PendingReport, Reason, ReasonKind, unknown_report
from harestart.domain.pending.settings import ServerSettings, parse_settings, settings_statements

__all__ = [
    "HostFacts",
    "PendingReport",
    "Reason",
    "ReasonKind",
    "ServerSettings",
    "host_script",
    "judge_pending",
    "option_groups",
    "parse_host_facts",
    "parse_settings",
    "settings_statements",
    "unknown_report",
]
