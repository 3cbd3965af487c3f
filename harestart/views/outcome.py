"""A run's end for people and scripts: each group's summary as it ends, the results as JSON,
the fleet round, the refusals and the ``resume`` hints of interrupted runs."""

from __future__ import annotations

import json
from typing import Any, TextIO

from harestart.domain.judge import resume_command
from harestart.domain.result import RunResult, render_results_json, render_summary
from harestart.engine.execute import Outcome
from harestart.engine.fleet import FleetReport
from harestart.engine.prepare import Refusal, Skipped

FLEET_MODE = (
    "fleet mode: the groups are shared with the other bastions on the coordination service; "
    "each is checked when this bastion takes it"
)


class SummaryListener:
    """``engine.execute``'s listener for a terminal: each group's summary table as it ends
    (``summaries``: text output only) on ``out``, and with several groups each refusal on
    ``err`` (one group's refusal is the command's error message)."""

    def __init__(self, out: TextIO, err: TextIO, *, summaries: bool, several: bool) -> None:
        self.out, self.err = out, err
        self.summaries, self.several = summaries, several

    def finished(self, result: RunResult) -> None:
        if self.summaries:
            self.out.write("\n" + render_summary(result) + "\n")
            self.out.flush()

    def refused(self, refusal: Refusal) -> None:
        if self.several:
            self.err.write(f"harestart: group {refusal.group.id}: {refusal.error}\n")
            self.err.flush()


def skipped_dict(skipped: Skipped) -> dict[str, Any]:
    """A group ``run --only-pending`` left alone: ok, nothing changed, no lock taken."""
    g = skipped.group
    return {"group": g.id, "account": g.account, "ok": True, "skipped": skipped.why}


def outcome_json(outcome: Outcome, *, several: bool) -> str:
    """The results (one object for one group, a list with several), with the fleet round;
    the groups ``--only-pending`` skipped are results saying so (``skipped``)."""
    if outcome.fleet is not None:
        doc = {
            "results": [r.to_dict() for r in outcome.results],
            "fleet": outcome.fleet.to_dict(),
        }
        return json.dumps(doc, indent=2)
    if not outcome.skipped:
        return render_results_json(list(outcome.results), force_list=several)
    docs = [r.to_dict() for r in outcome.results] + [skipped_dict(x) for x in outcome.skipped]
    return json.dumps(docs if several or len(docs) > 1 else docs[0], indent=2)


def text_tail(outcome: Outcome) -> list[str]:
    """What text output ends with: the skipped groups, and the fleet round."""
    lines = [
        f"group {x.group.id}: {x.why}: not restarted (no lock taken, MHA untouched)"
        for x in outcome.skipped
    ]
    return lines + (["\n" + render_fleet(outcome.fleet)] if outcome.fleet is not None else [])


def render_fleet(report: FleetReport) -> str:
    lines = [f"fleet round {report.round} (member {report.member}):"]
    lines += [f"  restarted here: {g}" for g in report.restarted]
    lines += [f"  skipped: {x['group']}: {x['why']}" for x in report.skipped]
    lines += [f"  FAILED: {x['group']}: {x['why']}" for x in report.failed]
    if report.error is not None:
        lines.append(f"  STOPPED: {report.error}")
    if not report.complete:
        why = "this bastion stopped" if report.error is not None else "interrupted"
        lines.append(f"  the round is not complete ({why}): run --all again to continue it")
    return "\n".join(lines)


def unfinished_hints(outcome: Outcome, inventory: str) -> list[str]:
    """One line per group whose run is left unfinished (interrupted, or failed after preflight:
    its journal waits): where it stopped or where MHA stands, and the command that continues
    it."""
    lines = []
    for r in outcome.results:
        resume = f"`{resume_command(inventory, r.group)}`"
        if r.interrupted:
            lines.append(
                f"harestart: group {r.group} interrupted; MHA: {r.mha_after}; "
                f"continue with {resume}"
            )
        elif r.failure is not None:
            lines.append(
                f"harestart: group {r.group} failed at {r.failure.step}; once the "
                f"cause is fixed, continue with {resume}"
            )
    return lines
