"""A task's story: what happened to it and why, read back from the ledger.

Every stimulus the ledger authority accepted is journalled with its time (the ``stimuli``
table, :mod:`meshbench.store.ledger`); the events each one produced follow it in the ledger.
:func:`task_story` reads both for one task and tells them in order, like distributed's
``story(key)``: the offers (and the selection score of each, as the books stood when the
authority chose), the assignment, commitments, reveals, votes, timers that fired, the
decision, payouts and slashes. ``mesh.story(task)`` and ``meshbench ledger story CID`` print it.
A task that cannot proceed ends with a ``waiting:`` line saying why ("needs 3 verifiers, 2
eligible: waiting for workers"): the live node knows that (``mesh.story`` asks it), the
ledger alone does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshbench.core import reputation, selection
from meshbench.core.books import Books
from meshbench.core.encoding import CID, parse_cid
from meshbench.core.errors import LedgerError
from meshbench.core.events import (
    AuditDrawn,
    EscrowDispute,
    EscrowStateChanged,
    HeldReleased,
    QuorumReached,
    RefereeRuled,
    ResultClawedBack,
    RewardDistributed,
    StakeSlashed,
    TaskAssigned,
    TaskExpired,
    VerdictJudged,
)
from meshbench.core.model import Model
from meshbench.core.protocol import AllOffersIn, PrivateInput, TimeoutFired, VerdictJudgement
from meshbench.core.tables import cid_key
from meshbench.core.types import (
    ComputeOffer,
    ExecutionReceipt,
    ResultCommitment,
    TaskIntent,
    VerificationReceipt,
)
from meshbench.store.ledger import Ledger

__all__ = ["StoryLine", "TaskStory", "task_story"]


@dataclass(frozen=True)
class StoryLine:
    """One step: when (ms since publication), the stimulus id, what, and why."""

    at_ms: int
    stimulus: str  # "#n": the journal entry (the stimulus id); "" for a produced event
    what: str
    detail: str


@dataclass
class TaskStory:
    task_cid: str
    lines: list[StoryLine] = field(default_factory=list)
    outcome: str | None = None
    #: why the task cannot proceed now (the node's ``why``), None when nothing holds it up
    waiting: str | None = None

    def __str__(self) -> str:
        out = [f"task {self.task_cid}" + (f": {self.outcome}" if self.outcome else "")]
        for line in _collapsed(self.lines):
            stamp = f"+{line.at_ms} ms" if line.stimulus else ""
            out.append(f"{stamp:>12} {line.stimulus:>6}  {line.what:<22} {line.detail}")
        if self.waiting:
            out.append(f"{'':>12} {'':>6}  waiting: {self.waiting}")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(str(self)) + "</pre>"


def _collapsed(lines: list[StoryLine]) -> list[StoryLine]:
    """Runs of the same stimulus that produced nothing (an offer window that reopened
    every few seconds) as one line with a count."""
    out: list[StoryLine] = []
    run: list[StoryLine] = []

    def flush() -> None:
        if len(run) > 2:
            first, last = run[0], run[-1]
            out.append(first)
            out.append(
                StoryLine(
                    last.at_ms,
                    last.stimulus,
                    first.what,
                    f"{first.detail}: {len(run) - 1} more times until +{last.at_ms} ms, "
                    "each time with no event",
                )
            )
        else:
            out.extend(run)
        run.clear()

    for line in lines:
        quiet = bool(line.stimulus)
        if quiet and run and run[-1].what == line.what:
            run.append(line)
            continue
        if out and run and not line.stimulus:
            # a produced event follows the last of the run: that one did something
            last = run.pop()
            flush()
            out.append(last)
            out.append(line)
            continue
        flush()
        if quiet:
            run.append(line)
        else:
            out.append(line)
    flush()
    return out


def _short(did: str | None) -> str:
    if not did:
        return "-"
    return did if len(did) < 20 else f"{did[:12]}…{did[-4:]}"


def task_story(
    ledger: Ledger, task_cid: CID | str, *, scores: bool = True, waiting: str | None = None
) -> TaskStory:
    """The story of one task in ``ledger`` (raises ``LedgerError`` for an unknown task).

    With ``scores`` the ledger is refolded up to each assignment so the offers' selection
    scores are those the authority computed (one pass over the ledger's events).
    ``waiting``: why the task cannot proceed now (the live node's ``why``), told last.
    """
    cid = parse_cid(task_cid) if isinstance(task_cid, str) else task_cid
    key = cid_key(cid)
    stimuli = ledger.stimuli_ranges(key)
    if not stimuli:
        raise LedgerError(f"no journalled stimulus for task {key} in this ledger")
    story = TaskStory(task_cid=key, waiting=waiting)
    t0: int | None = None
    books = Books(ledger.authority) if scores else None
    offers: dict[str, ComputeOffer] = {}
    task: TaskIntent | None = None
    spans = iter(stimuli)
    span = next(spans, None)
    for seq, _cid, ev in ledger.iter_events(check=False):
        while span is not None and span[1] < seq:
            n, _after, at, journaled = span
            t0 = at if t0 is None else t0
            story.lines += _stimulus_lines(n, at - t0, journaled.stimulus)
            span = next(spans, None)
        about = getattr(ev, "task_cid", None)
        mine = (isinstance(ev, TaskIntent) and ev.cid == cid) or about == cid
        if mine:
            if isinstance(ev, TaskIntent):
                task = ev
            elif isinstance(ev, ComputeOffer):
                offers[ev.worker] = ev
            elif isinstance(ev, TaskAssigned) and books is not None and task is not None:
                story.lines.append(_scores_line(books, task, ev, offers))
            line = _event_line(ev)
            if line is not None:
                story.lines.append(line)
            if isinstance(ev, QuorumReached):
                story.outcome = ev.outcome
            elif isinstance(ev, TaskExpired) and ev.stage == "deadline":
                story.outcome = "Expired"
        if books is not None:
            books.apply(ev)
    while span is not None:
        n, _after, at, journaled = span
        t0 = at if t0 is None else t0
        story.lines += _stimulus_lines(n, at - t0, journaled.stimulus)
        span = next(spans, None)
    return story


def _stimulus_lines(n: int, at: int, stimulus: object) -> list[StoryLine]:
    sid = f"#{n}"
    if isinstance(stimulus, TimeoutFired):
        why = {
            "offers": "the offer window closed",
            "execution": "the worker's time to commit ran out",
            "verification": "the verification time ran out",
            "deadline": "the task's deadline passed",
        }.get(stimulus.stage, stimulus.stage)
        return [StoryLine(at, sid, f"Timeout:{stimulus.stage}", why)]
    if isinstance(stimulus, AllOffersIn):
        return [StoryLine(at, sid, "AllOffersIn", "every worker asked has answered")]
    if isinstance(stimulus, VerdictJudgement):
        verdict = "agree" if stimulus.approved else "differ"
        return [StoryLine(at, sid, "VerdictJudgement", f"the validator says the outputs {verdict}")]
    if isinstance(stimulus, PrivateInput):
        return [StoryLine(at, sid, "PrivateInput", "the input is sealed to those chosen only")]
    if isinstance(stimulus, Model):
        who = getattr(stimulus, "signer", None)
        return [StoryLine(at, sid, type(stimulus).__name__, f"from {_short(who)}")]
    return [StoryLine(at, sid, type(stimulus).__name__, "")]


def _event_line(ev: Model) -> StoryLine | None:
    def line(what: str, detail: str) -> StoryLine:
        return StoryLine(0, "", what, detail)

    match ev:
        case TaskIntent():
            return line(
                "published",
                f"by {_short(ev.publisher)}, fee {ev.fee}, {ev.verifier_count} verifiers asked, "
                f"validator {ev.validator}",
            )
        case ComputeOffer():
            return line(
                "offer",
                f"{_short(ev.worker)} cost {ev.cost}, eta {ev.eta_ms} ms, capacity {ev.capacity}",
            )
        case TaskAssigned():
            return line(
                f"assigned (attempt {ev.attempt})",
                f"worker {_short(ev.worker)} at {ev.price}, due +{ev.due_at - ev.timestamp} ms; "
                f"verifiers {', '.join(_short(v) for v in ev.verifiers)}",
            )
        case ResultCommitment():
            return line("commitment", f"{_short(ev.worker)} committed to an output")
        case ExecutionReceipt():
            return line("reveal", f"worker {_short(ev.worker)} revealed output {ev.output_cid}")
        case VerificationReceipt():
            vote = "approves" if ev.approved else "rejects"
            same = "" if ev.output_cid is None else f" (its output {ev.output_cid})"
            return line("verdict", f"{_short(ev.verifier)} {vote}{same}")
        case AuditDrawn():
            if not ev.audited:
                return line(
                    "not audited",
                    f"drawn at {ev.rate_ppm / 10_000:g} % ({ev.reason}): the payment is held",
                )
            return line(
                "audited",
                f"drawn at {ev.rate_ppm / 10_000:g} % ({ev.reason}) from the authority's "
                "signature over the commitment; auditors "
                + ", ".join(_short(v) for v in ev.auditors),
            )
        case RefereeRuled():
            what = "re-check after the worker was caught: " if ev.recheck else ""
            verdict = (
                "the worker's output stands" if ev.confirmed else "the worker's output is wrong"
            )
            return line("referee", f"{what}the authority re-executed: {verdict}")
        case HeldReleased():
            return line("released", f"held payment {ev.amount} paid to {_short(ev.account)}")
        case ResultClawedBack():
            return line(
                "clawed back",
                f"held payment {ev.amount} of {_short(ev.account)} returned to the publisher",
            )
        case VerdictJudged():
            vote = "confirms" if ev.approved else "does not confirm"
            why = f": {ev.reason}" if ev.reason else ""
            return line(
                "judged",
                f"by the authority under {ev.validator}: {_short(ev.verifier)}'s output "
                f"{vote} the worker's{why}",
            )
        case EscrowDispute():
            return line(
                "dispute",
                f"{ev.reason}: more verifiers drawn: "
                + ", ".join(_short(v) for v in ev.extra_verifiers),
            )
        case QuorumReached():
            return line(
                f"decision {ev.outcome}",
                f"{len(ev.approvals)} approve, {len(ev.rejections)} reject; "
                f"{'on time' if ev.on_time else 'late'}; against the quorum: "
                + (", ".join(_short(v) for v in ev.against_quorum) or "nobody"),
            )
        case EscrowStateChanged():
            return line(
                "escrow",
                f"{ev.from_state or '-'} -> {ev.to_state} ({ev.amount}): {ev.reason}",
            )
        case RewardDistributed():
            parts = ", ".join(f"{p.role} {_short(p.account)} {p.amount}" for p in ev.payouts)
            return line("payouts", parts or "nothing to pay")
        case StakeSlashed():
            return line("slashed", f"{_short(ev.account)} lost {ev.amount} ({ev.offence})")
        case TaskExpired():
            who = f" worker {_short(ev.worker)}" if ev.worker else ""
            return line(f"expired ({ev.stage})", f"{ev.reason}{who}")
    return None


def _scores_line(
    books: Books, task: TaskIntent, ev: TaskAssigned, offers: dict[str, ComputeOffer]
) -> StoryLine:
    """The selection score of every offer, with the books as they were before ``ev``."""
    policy = books.policy_for(task.federation)
    load: dict[str, int] = {}
    for row in books.table("tasks").values():
        if row.get("worker") and row["state"] not in ("Settled",):
            load[row["worker"]] = load.get(row["worker"], 0) + 1
    ranked: list[tuple[float, str]] = []
    for worker, offer in offers.items():
        rep = reputation.trusted(books.reputation_record(worker), ev.timestamp, policy)
        s: Any = selection.score_breakdown(
            task, offer, policy, reputation=rep, bond=books.bonded(worker), load=load.get(worker, 0)
        )
        ranked.append((s.total, worker))
    ranked.sort(reverse=True)
    parts = [
        f"{_short(w)} {total:.3f}" + (" (chosen)" if w == ev.worker else "") for total, w in ranked
    ]
    return StoryLine(0, "", "selection scores", "; ".join(parts))
