"""ipywidgets panels: thin views of a :class:`~meshbench.workbench.feed.MeshFeed`.

Each panel renders what the feed holds and re-renders when the feed pushes a change on one
of its topics; it keeps no protocol logic. ``Dashboard(mesh)`` combines them with a publish
form::

    import meshbench
    mesh = meshbench.Mesh.in_process(workers=4)
    dash = meshbench.workbench.Dashboard(mesh)
    dash                      # renders in Jupyter; publish from the form or from code

Errors from the mesh (a refused receipt, a failed task, an invalid proposal, a bad form
value) are shown as one readable line in the dashboard's message area, never as a
traceback that breaks it.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from meshbench.core.errors import MeshError
from meshbench.core.types import CapabilityScope
from meshbench.workbench.feed import FeedError, MeshFeed, short

if TYPE_CHECKING:
    from meshbench.runtime.mesh import Mesh, TaskHandle
    from meshbench.workbench.federation import FederationDesk

__all__ = [
    "Dashboard",
    "EscrowPanel",
    "OffersPanel",
    "Panel",
    "PeersPanel",
    "PolicyPanel",
    "PublishForm",
    "ReceiptsPanel",
    "ReputationPanel",
    "TasksPanel",
]

MAX_ROWS = 30
_STYLE = (
    "<style>.mb-t{border-collapse:collapse;font-size:12px}.mb-t td,.mb-t th{padding:2px 8px;"
    "border-bottom:1px solid #ddd;text-align:left}.mb-t th{background:#f4f4f4}"
    ".mb-win{background:#e6f4ea}.mb-bad{color:#b00020}.mb-ok{color:#137333}</style>"
)


def table(
    rows: Iterable[Sequence[Any]], header: Sequence[str], *, classes: Sequence[str] = ()
) -> str:
    """An HTML table (cells escaped unless they are already ``Markup``)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
        cells = "".join(f"<td>{_cell(c)}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(header)}"><i>nothing yet</i></td></tr>')
    return f'{_STYLE}<table class="mb-t"><tr>{head}</tr>{"".join(body)}</table>'


class Markup(str):
    """HTML that a table cell must not escape."""


def _cell(value: Any) -> str:
    if isinstance(value, Markup):
        return str(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def sparkline(values: Sequence[float], width: int = 120, height: int = 20) -> Markup:
    """A tiny inline SVG of ``values`` in 0..1 (reputation over time)."""
    if not values:
        return Markup("")
    n = len(values)
    pts = " ".join(
        f"{(i * (width - 2) / max(1, n - 1)) + 1:.1f},{height - 1 - v * (height - 2):.1f}"
        for i, v in enumerate(values)
    )
    return Markup(
        f'<svg width="{width}" height="{height}"><polyline fill="none" stroke="#1a73e8" '
        f'stroke-width="1.5" points="{pts}"/></svg>'
    )


class Panel:
    """A titled view that re-renders when the feed changes one of ``topics``."""

    title = "panel"
    topics: frozenset[str] = frozenset()

    def __init__(self, feed: MeshFeed) -> None:
        self.feed = feed
        self.body = w.HTML()
        self.widget: w.Widget = w.VBox([self.body])
        self.renders = 0
        feed.subscribe(self._on_change)
        self.refresh()

    def _on_change(self, topic: str, payload: Any) -> None:
        if topic in self.topics:
            self.refresh()

    def refresh(self) -> None:
        self.body.value = self.render()
        self.renders += 1

    def render(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return _bundle(self.widget, repr(self), f"<b>{self.title}</b>{self.body.value}", **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.renders} renders)"


def _bundle(widget: w.Widget, text: str, snapshot: str, **kwargs: Any) -> dict[str, Any]:
    """The widget for Jupyter, plus a static HTML snapshot and a one-line text for viewers
    that cannot run widgets (a code host showing a committed notebook)."""
    bundle = dict(widget._repr_mimebundle_(**kwargs) or {})
    bundle["text/plain"] = text
    bundle["text/html"] = snapshot
    return bundle


class _TaskPicker(Panel):
    """A panel about one task at a time (the newest, unless you pick another)."""

    def __init__(self, feed: MeshFeed) -> None:
        self.picker = w.Dropdown(description="task", options=[], layout=w.Layout(width="420px"))
        self._follow = True
        self._updating = False
        super().__init__(feed)
        self.widget = w.VBox([self.picker, self.body])
        self.picker.observe(self._picked, names="value")

    def _picked(self, change: dict[str, Any]) -> None:
        if self._updating:
            return
        options = [v for _, v in self.picker.options]
        self._follow = not options or change["new"] == options[-1]
        self.body.value = self.render()

    def refresh(self) -> None:
        with self.feed.reading():
            cids = list(self.feed.tasks)
        options = [(f"{i + 1}: {short(c)}", c) for i, c in enumerate(cids)]
        if len(options) != len(self.picker.options):
            keep, follow = self.picker.value, self._follow
            self._updating = True  # setting options moves the value: not a person's pick
            try:
                self.picker.options = options
                if options:
                    self.picker.value = options[-1][1] if follow or keep is None else keep
            finally:
                self._updating = False
        super().refresh()

    @property
    def task_cid(self) -> str | None:
        return self.picker.value


class TasksPanel(Panel):
    """Every task (newest first): its state, outcome and, while it cannot proceed, why."""

    title = "Tasks"
    topics = frozenset({"tasks", "offers", "receipts", "escrow", "waiting"})

    def render(self) -> str:
        with self.feed.reading():
            views = list(self.feed.tasks.items())[-MAX_ROWS:][::-1]
            rows, classes = [], []
            for cid, view in views:
                why = self.feed.why(cid)
                rows.append([short(cid), view.state, view.outcome or "", len(view.offers),
                             why or ""])  # fmt: skip
                classes.append("mb-bad" if why or view.outcome in _BAD else "")
        return table(rows, ["task", "state", "outcome", "offers", "waiting"], classes=classes)


_BAD = ("Rejected", "Expired", "NoConsensus", "Failed")


class OffersPanel(_TaskPicker):
    """Offers for a task, the selection score term by term, the winner marked."""

    title = "Offers"
    topics = frozenset({"tasks", "offers"})

    def render(self) -> str:
        cid = self.task_cid
        frame = self.feed.offers(cid) if cid else None
        if frame is None or frame.is_empty():
            return table([], ["worker"])
        rows, classes = [], []
        for r in frame.sort("score", descending=True, nulls_last=True).iter_rows(named=True):
            rows.append(
                ["★" if r["winner"] else "", short(r["worker"]), r["cost"], r["eta_ms"],
                 r["capacity"], r["score_reputation"], r["score_cost"], r["score_eta"],
                 r["score_capacity"], r["fair_queue_divisor"], r["score"]]
            )  # fmt: skip
            classes.append("mb-win" if r["winner"] else "")
        header = ["", "worker", "cost", "eta ms", "capacity", "reputation", "cost term",
                  "eta term", "capacity term", "÷ queue", "score"]  # fmt: skip
        return table(rows, header, classes=classes)


class ReceiptsPanel(Panel):
    """Execution and verification receipts: verdicts, fuel, signature checked."""

    title = "Receipts"
    topics = frozenset({"receipts"})

    def render(self) -> str:
        with self.feed.reading():
            recent = self.feed.receipts[-MAX_ROWS:][::-1]
        rows, classes = [], []
        for r in recent:
            bad = r["verdict"] == "reject" or r["signature"] != "valid"
            rows.append(
                [short(r["task_cid"]), r["kind"], short(r["peer"]), r["verdict"], r["fuel"],
                 short(r["output_cid"]) if r["output_cid"] else "", r["signature"], r["reason"]]
            )  # fmt: skip
            classes.append("mb-bad" if bad else "")
        header = ["task", "kind", "peer", "verdict", "fuel", "output", "signature", "reason"]
        return table(rows, header, classes=classes)


class EscrowPanel(_TaskPicker):
    """The escrow timeline and payouts of a task, and everyone's balances."""

    title = "Escrow"
    topics = frozenset({"tasks", "escrow"})

    def render(self) -> str:
        cid = self.task_cid
        with self.feed.reading():
            view = self.feed.tasks.get(cid) if cid else None
            timeline = list(view.escrow) if view else []
            state = view.state if view else ""
            audit = list(view.audit) if view else []
            pays = [p for p in self.feed.payouts if p["task_cid"] == cid]
        steps = table(
            [[e["from"] or "—", e["to"], e["amount"], e["reason"]] for e in timeline],
            ["from", "to", "amount", "reason"],
        )
        payouts = table(
            [[p["role"], short(p["account"]), p["amount"]] for p in pays],
            ["role", "account", "amount"],
        )
        balances = self.feed.balances()
        bal = table(
            [
                [short(r["account"]), r["balance"], r["bonded"]]
                for r in balances.iter_rows(named=True)
            ],
            ["account", "balance", "bonded"],
        )
        audited = (
            "<b>audit:</b> " + "; ".join(html.escape(a) for a in audit) + "<br>" if audit else ""
        )
        return (
            f"<b>task state:</b> {html.escape(state)}<br>{audited}<b>escrow</b>{steps}"
            f"<b>payouts</b>{payouts}<b>balances</b>{bal}"
        )


class ReputationPanel(Panel):
    """Reputation per peer now, and over time (one point per observation)."""

    title = "Reputation"
    topics = frozenset({"reputation", "tasks"})

    def render(self) -> str:
        hist = self.feed.reputation_history()
        if hist.is_empty():
            return table([], ["peer", "score"])
        rows = []
        for peer, group in sorted(hist.group_by("peer"), key=lambda g: str(g[0][0])):
            scores = group["score"].to_list()
            last = group.row(-1, named=True)
            rows.append(
                [short(peer[0]), scores[-1], last["executions_ok"], last["executions_bad"],
                 last["verifications_ok"], last["verifications_bad"], sparkline(scores)]
            )  # fmt: skip
        header = ["peer", "score", "exec ok", "exec bad", "verif ok", "verif bad", "over time"]
        return table(rows, header)


class PolicyPanel(Panel):
    """The active policy, proposals with tallies (and vote buttons), the history."""

    title = "Policy"
    topics = frozenset({"policy"})

    def __init__(self, feed: MeshFeed, desk: FederationDesk | None = None) -> None:
        self.desk = desk
        self.voter = w.Dropdown(description="vote as", options=list(desk.members) if desk else [])
        self.buttons = w.VBox()
        self.last_action = w.HTML()
        super().__init__(feed)
        parts: list[w.Widget] = [self.body]
        if desk is not None:
            parts += [w.HTML("<b>vote</b>"), self.voter, self.buttons, self.last_action]
        self.widget = w.VBox(parts)

    def refresh(self) -> None:
        super().refresh()
        if self.desk is None:
            return
        rows = []
        for p in self.feed.proposals():
            if p["tally"].status != "Open":
                continue
            yes = w.Button(description="approve", button_style="success")
            no = w.Button(description="reject", button_style="danger")
            yes.on_click(self._voter(p["cid"], True))
            no.on_click(self._voter(p["cid"], False))
            label = w.HTML(f"{html.escape(p['description'])} <code>{short(p['cid'])}</code>")
            rows.append(w.HBox([label, yes, no]))
        self.buttons.children = rows

    def _voter(self, cid: str, approve: bool) -> Callable[[Any], None]:
        def click(_: Any) -> None:
            self.vote(self.voter.value, cid, approve=approve)

        return click

    def vote(self, member: str, cid: str, *, approve: bool) -> None:
        """What a vote button does (also callable from code and tests)."""
        try:
            tally = self.desk.vote(member, cid, approve=approve)
            self.last_action.value = (
                f"{html.escape(member)} voted {'for' if approve else 'against'}: "
                f"{tally.status}, {tally.approvals} of {tally.required} approvals"
            )
        except MeshError as exc:
            err = self.feed.report(f"vote by {member}", exc)
            self.last_action.value = f'<span class="mb-bad">{html.escape(str(err))}</span>'

    def render(self) -> str:
        policy = self.feed.policy()
        rs, vq = policy.reward_settings, policy.verification_quorum
        head = (
            f"<b>active policy</b> version {policy.policy_version} "
            f"<code>{short(policy.cid)}</code>: worker {rs.worker_percentage} % / verifiers "
            f"{rs.verifier_percentage} % / platform {rs.platform_fee_percentage} %; quorum "
            f"{vq.required_percentage} % of {vq.minimum_verifiers}..{vq.maximum_verifiers} "
            f"verifiers; min fee {policy.min_fee}"
        )
        props = table(
            [
                [short(p["cid"]), p["description"], p["tally"].status,
                 f"{p['tally'].approvals} of {p['tally'].required}", p["tally"].rejections,
                 ", ".join(f"{k}" for k in p["updates"])]
                for p in self.feed.proposals()
            ],
            ["proposal", "description", "status", "approvals", "rejections", "changes"],
        )  # fmt: skip
        hist = table(
            [
                [p.policy_version, short(p.cid),
                 f"{p.reward_settings.worker_percentage}/{p.reward_settings.verifier_percentage}"
                 f"/{p.reward_settings.platform_fee_percentage}",
                 short(p.previous_policy_cid) if p.previous_policy_cid else "—"]
                for p in self.feed.policy_history()
            ],
            ["version", "policy", "worker/verifier/platform %", "previous"],
        )  # fmt: skip
        return f"{head}<br><b>proposals</b>{props}<b>history</b>{hist}"


class PeersPanel(Panel):
    """Peers: hardware and federation (and membership, in a governed federation)."""

    title = "Peers"
    topics = frozenset({"peers", "policy"})

    def render(self) -> str:
        members = set(self.feed.members())
        with self.feed.reading():
            peers = sorted(self.feed.peers.values(), key=lambda p: p.did)
        rows = []
        for p in peers:
            hw = p.hardware
            rows.append(
                [short(p.did), short(p.federation), ", ".join(p.roles),
                 hw.memory_mb if hw else None, hw.cpu_cores if hw else None,
                 hw.gpu_class or (hw.gpu_flops if hw and hw.gpu_flops else "—") if hw else "—",
                 ("member" if p.did in members else "not a member") if members else "open"]
            )  # fmt: skip
        header = ["peer", "federation", "roles", "memory MB", "cores", "GPU", "membership"]
        return table(rows, header)


def _example_modules() -> list[tuple[str, str]]:
    """The example modules under ``datasets/wasm`` (from the source tree or the cwd)."""
    for root in (Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2]):
        d = root / "datasets" / "wasm"
        if d.is_dir():
            return [(p.name, os.path.relpath(p)) for p in sorted(d.glob("*.wasm"))]
    return []


class PublishForm:
    """Pick a module (or upload one), an input, fee, verifiers and scope; publish; follow."""

    def __init__(self, mesh: Mesh, feed: MeshFeed) -> None:
        self.mesh = mesh
        self.feed = feed
        modules = _example_modules()
        hello = [v for k, v in modules if k == "hello.wasm"]
        self.module = w.Dropdown(
            description="module", options=modules, value=hello[0] if hello else None
        )
        self.upload = w.FileUpload(accept=".wasm", multiple=False, description="or upload")
        self.input = w.Textarea(description="input", value="hello mesh")
        # or a Python function, run in the sandboxed CPython (the python executor)
        self.python = w.Textarea(
            description="python", placeholder="def double(x):\n    return 2 * x", value=""
        )
        self.entry = w.Text(description="entry", placeholder="double", value="")
        self.python_args = w.Text(description="args", value="[]", placeholder="JSON list")
        self.fee = w.BoundedIntText(description="fee", value=100, min=0, max=10**12)
        self.verifiers = w.BoundedIntText(description="verifiers", value=3, min=0, max=64)
        default = CapabilityScope()
        self.memory_mb = w.BoundedIntText(
            description="memory MB", value=default.memory_mb, min=1, max=65536
        )
        self.cpu_cycles = w.BoundedIntText(
            description="cpu cycles", value=default.cpu_cycles, min=1, max=10**15
        )
        self.button = w.Button(description="Publish", button_style="primary", icon="paper-plane")
        self.status = w.HTML()
        self.handles: list[TaskHandle] = []
        self.button.on_click(lambda _: self.publish())
        feed.subscribe(self._on_change)
        self.widget = w.VBox(
            [
                w.HBox([self.module, self.upload]),
                self.input,
                self.python,
                w.HBox([self.entry, self.python_args]),
                w.HBox([self.fee, self.verifiers]),
                w.HBox([self.memory_mb, self.cpu_cycles]),
                self.button,
                self.status,
            ]
        )

    def _wasm(self) -> bytes | str:
        files = self.upload.value
        if files:
            item = files[0]
            return bytes(item["content"])
        if not self.module.value:
            raise ValueError("pick a module or upload a .wasm file")
        return str(self.module.value)

    def publish(self) -> TaskHandle | None:
        """Publish from the form's values; returns the task handle (None on an error).

        With Python source in the form, the task is ``entry(*args)`` of that source in the
        sandboxed CPython (the fee left at 100 means: what a default worker asks)."""
        try:
            if self.python.value.strip():
                handle = self._publish_python()
            else:
                scope = CapabilityScope(
                    memory_mb=self.memory_mb.value, cpu_cycles=self.cpu_cycles.value
                )
                handle = self.mesh.publish(
                    wasm=self._wasm(), input=self.input.value.encode(), fee=self.fee.value,
                    verifiers=self.verifiers.value, scope=scope,
                )  # fmt: skip
        except (MeshError, ValueError, TypeError, OSError) as exc:
            err = self.feed.report("publish", exc)
            self.status.value = f'<span class="mb-bad">{html.escape(str(err))}</span>{_STYLE}'
            return None
        self.handles.append(handle)
        self._show()
        return handle

    def _publish_python(self) -> TaskHandle:
        import json

        from meshbench.exec.python_task import PythonCall

        entry = self.entry.value.strip()
        if not entry.isidentifier():
            raise ValueError("name the function to call (entry), e.g. double")
        args = json.loads(self.python_args.value or "[]")
        if not isinstance(args, list):
            raise ValueError("args is a JSON list, e.g. [21]")
        call = PythonCall(source=self.python.value, entry=entry, args=tuple(args))
        fee = None if self.fee.value == 100 else self.fee.value
        return self.mesh.publish(python=call, fee=fee, verifiers=self.verifiers.value)

    def _on_change(self, topic: str, payload: Any) -> None:
        if self.handles and topic != "error":
            self._show()

    def _show(self) -> None:
        handle = self.handles[-1]
        cid = str(handle.cid)
        with self.feed.reading():
            view = self.feed.tasks.get(cid)
            state = view.state if view else "Published"
            n_offers = len(view.offers) if view else 0
            receipts = [r for r in self.feed.receipts if r["task_cid"] == cid]
            why = self.feed.why(cid)
        approvals = sum(r["verdict"] == "approve" for r in receipts)
        cls = "mb-bad" if state in ("Rejected", "Expired", "NoConsensus") else "mb-ok"
        waiting = f" · <span class='mb-bad'>waiting: {html.escape(why)}</span>" if why else ""
        self.status.value = (
            f"{_STYLE}task <code>{short(cid)}</code>: <b class='{cls}'>{html.escape(state)}</b>"
            f" · {n_offers} offers · {len(receipts)} receipts · {approvals} approvals{waiting}"
        )


class Dashboard:
    """Every panel over one mesh, with the publish form and a message area."""

    def __init__(self, mesh: Mesh, *, federation: FederationDesk | None = None) -> None:
        self.mesh = mesh
        self.feed = MeshFeed.attach(mesh.node)
        self.form = PublishForm(mesh, self.feed)
        self.tasks = TasksPanel(self.feed)
        self.offers = OffersPanel(self.feed)
        self.receipts = ReceiptsPanel(self.feed)
        self.escrow = EscrowPanel(self.feed)
        self.reputation = ReputationPanel(self.feed)
        self.policy = PolicyPanel(self.feed, federation)
        self.peers = PeersPanel(self.feed)
        self.panels: list[Panel] = [
            self.tasks, self.offers, self.receipts, self.escrow, self.reputation, self.policy,
            self.peers,
        ]  # fmt: skip
        self.messages = w.HTML()
        self.feed.subscribe(self._on_change)
        tabs = w.Tab(children=[p.widget for p in self.panels])
        for i, p in enumerate(self.panels):
            tabs.set_title(i, p.title)
        self.tabs = tabs
        self.header = w.HTML(self._header())
        self.widget = w.VBox([self.header, self.form.widget, tabs, self.messages])
        self.widget.add_class("meshbench-dashboard")

    def set_federation(self, desk: FederationDesk) -> None:
        """Attach a :class:`~meshbench.workbench.federation.FederationDesk` (vote buttons)."""
        self.policy.desk = desk
        self.policy.voter.options = list(desk.members)
        self.policy.widget.children = [
            self.policy.body, w.HTML("<b>vote</b>"), self.policy.voter, self.policy.buttons,
            self.policy.last_action,
        ]  # fmt: skip
        self.policy.refresh()

    def _header(self) -> str:
        with self.feed.reading():
            n_tasks = len(self.feed.tasks)
            settled = sum(v.state in ("Settled", "Expired") for v in self.feed.tasks.values())
            waiting = sum(self.feed.why(cid) is not None for cid in self.feed.tasks)
            peers = len(self.feed.peers)
        held = f", {waiting} waiting (see Tasks)" if waiting else ""
        return (
            f"<b>meshbench</b> · {peers} peers · {n_tasks} tasks ({settled} settled{held}) · "
            f"{self.feed.events_seen} events"
        )

    def _on_change(self, topic: str, payload: Any) -> None:
        if topic == "error" and isinstance(payload, FeedError):
            lines = [html.escape(str(e)) for e in self.feed.errors[-5:]]
            self.messages.value = f'{_STYLE}<div class="mb-bad">{"<br>".join(lines)}</div>'
        self.header.value = self._header()

    def close(self) -> None:
        self.feed.detach()

    def snapshot_html(self) -> str:
        """The dashboard as static HTML (header, the newest task's offers, recent receipts)."""
        parts = [self.header.value, self.form.status.value]
        for p in (self.tasks, self.offers, self.receipts):
            parts.append(f"<h4>{p.title}</h4>{p.body.value}")
        return '<div class="meshbench-dashboard">' + "".join(parts) + "</div>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return _bundle(self.widget, repr(self), self.snapshot_html(), **kwargs)

    def __repr__(self) -> str:
        with self.feed.reading():
            n = len(self.feed.tasks)
        return f"Dashboard({len(self.feed.peers)} peers, {n} tasks)"
