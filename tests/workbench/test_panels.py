"""Panels headless: instantiated on a scripted in-process mesh, their state checked after
events (no browser, no kernel: the widgets' models are plain Python objects).

Every test has its own mesh on a manual clock (virtual time), so none depends on another.
"""

from __future__ import annotations

import pytest

from meshbench.core.selection import offer_score
from meshbench.runtime.clock import ManualClock
from meshbench.runtime.mesh import Mesh
from meshbench.workbench import Dashboard, FederationDesk, MeshFeed
from meshbench.workbench.feed import score_breakdown

HELLO = "datasets/wasm/hello.wasm"


@pytest.fixture
def mesh(tmp_path):
    clock = ManualClock()
    # once caught, the cheater no longer verifies (its reputation is below the gate): the
    # other three are a worker and two verifiers
    policy = {"verification_quorum": {"minimum_verifiers": 2}}
    with Mesh.in_process(
        workers=4, behaviours={3: "wrong"}, data_dir=tmp_path / "m", clock=clock, policy=policy
    ) as m:
        yield m


def settled(feed: MeshFeed, n: int) -> bool:
    return sum(v.state == "Settled" for v in feed.tasks.values()) >= n


def test_dashboard_follows_a_published_task(mesh):
    dash = Dashboard(mesh)
    try:
        before = dash.receipts.renders
        handle = mesh.publish(wasm=HELLO, input=b"one", fee=100, verifiers=3)
        result = handle.result(timeout=60)
        cid = str(handle.cid)
        assert dash.feed.wait_until(lambda: settled(dash.feed, 1), timeout=30)
        # offers: every worker bid, exactly one winner, and it is the worker that executed
        offers = dash.feed.offers(cid)
        assert offers.height == 4 and offers["winner"].sum() == 1
        winner = offers.filter("winner")["worker"][0]
        assert winner == result.receipt.worker
        assert "★" in dash.offers.body.value and dash.offers.task_cid == cid
        second = mesh.publish(wasm=HELLO, input=b"two", fee=100).result(timeout=60)
        assert dash.feed.wait_until(lambda: dash.offers.task_cid == str(second.task_cid), 10)
        dash.offers.picker.value = cid  # a person picks an older task: it stays picked
        mesh.publish(wasm=HELLO, input=b"three", fee=100).result(timeout=60)
        assert dash.feed.wait_until(lambda: len(dash.offers.picker.options) == 3, 10)
        assert dash.offers.task_cid == cid
        # receipts: execution + verifications, signatures checked
        receipts = dash.feed.receipts_frame().filter(task_cid=cid)
        assert sorted(receipts["kind"]) == ["execution"] + ["verification"] * 3
        assert set(receipts["signature"]) == {"valid"}
        assert dash.receipts.renders > before
        # escrow timeline and payouts, as the ledger has them
        view = dash.feed.tasks[cid]
        assert [e["to"] for e in view.escrow] == ["Created", "InProgress", mesh_final(result)]
        paid = sum(p["amount"] for p in dash.feed.payouts if p["task_cid"] == cid)
        assert paid == handle.task.fee
        assert "Settled" in dash.escrow.body.value
        # reputation moved for the worker and the verifiers
        hist = dash.feed.reputation_history()
        assert winner in set(hist["peer"])
        assert "<svg" in dash.reputation.body.value
        # header and repr
        assert "settled)" in dash.header.value
        assert repr(dash).startswith("Dashboard(4 peers")
        bundle = dash._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert "meshbench-dashboard" in bundle["text/html"]
    finally:
        dash.close()


def mesh_final(result) -> str:
    return "Completed" if result.outcome == "Accepted" else "Failed"


def test_feed_matches_the_nodes_own_books(mesh):
    feed = MeshFeed.attach(mesh.node)
    try:
        handles = [mesh.publish(wasm=HELLO, input=f"x{i}".encode(), fee=100) for i in range(3)]
        for h in handles:
            h.result(timeout=60)
        n = len(feed.tasks)
        assert feed.wait_until(lambda: settled(feed, n), timeout=30)
        node_books = mesh.node.books_tables()
        assert feed.books.table("accounts") == node_books["accounts"]
        assert feed.books.table("reputation") == node_books["reputation"]
        assert feed.errors == []
    finally:
        feed.detach()
    assert not feed.attached and not mesh.node.subscribed(feed.on_event)


def test_score_breakdown_sums_to_the_selection_score():
    from meshbench.core.policy import MeshPolicy
    from meshbench.core.types import CapabilityScope, ComputeOffer, HardwareProfile, TaskIntent
    from meshbench.testing.factories import make_identity

    pub, wk = make_identity(1), make_identity(2)
    task = TaskIntent(
        publisher=pub.did, federation=pub.did, wasm_cid=_cid(b"w"), input_cid=_cid(b"i"),
        fee=100, scope=CapabilityScope(), created_at=1, deadline=2,
    ).sign(pub)  # fmt: skip
    offer = ComputeOffer(
        task_cid=task.cid, worker=wk.did, federation=pub.did, cost=37, capacity=3, eta_ms=900,
        hardware=HardwareProfile(memory_mb=1024), created_at=1,
    ).sign(wk)  # fmt: skip
    policy = MeshPolicy()
    for rep, bond, load in ((0.5, 0, 0), (0.9, 150, 2), (0.1, 400, 7)):
        b = score_breakdown(task, offer, policy, reputation=rep, bond=bond, load=load)
        want = offer_score(task, offer, policy, reputation=rep, bond=bond, load=load)
        assert b.total == pytest.approx(want, rel=1e-12)


def _cid(data: bytes):
    from meshbench.core.encoding import blob_cid

    return blob_cid(data)


def test_errors_are_messages_not_tracebacks(mesh):
    dash = Dashboard(mesh)
    try:
        dash.form.fee.value = 1  # below the policy's minimum fee
        assert dash.form.publish() is None
        assert "ProtocolError" in dash.messages.value and "minimum" in dash.messages.value
        assert "mb-bad" in dash.form.status.value
        dash.form.module.value = None
        assert dash.form.publish() is None
        assert "pick a module" in dash.messages.value
        # a panel that fails to render is reported, and the stream goes on
        dash.peers.render = _boom  # type: ignore[method-assign]
        dash.form.module.value = next(v for k, v in dash.form.module.options if k == "hello.wasm")
        dash.form.fee.value = 100
        handle = dash.form.publish()
        assert handle is not None
        handle.result(timeout=60)
        assert dash.feed.wait_until(lambda: settled(dash.feed, len(dash.feed.tasks)), 30)
        # refused input from a worker shows up as a message too (node.rejections)
        garbled = b"garbled bytes"
        mesh.node.submit(garbled, wait=False)  # as a worker's answer arrives: queued
        mesh.publish(wasm=HELLO, input=b"after", fee=100).result(timeout=60)
        refused = f"node refused {len(garbled)} bytes"
        assert dash.feed.wait_until(
            lambda: any(str(e).startswith(refused) for e in dash.feed.errors), timeout=30
        )
        assert refused in dash.messages.value
    finally:
        dash.close()


def _boom() -> str:
    raise RuntimeError("render failed")


def test_policy_panel_votes_and_shows_the_new_split(tmp_path):
    from meshbench.core.governance import GovernanceRules

    clock = ManualClock()
    with Mesh.in_process(workers=4, data_dir=tmp_path, clock=clock) as m:
        dash = Dashboard(m)
        desk = FederationDesk.govern(m, rules=GovernanceRules(approval_count=2))
        dash.set_federation(desk)
        assert "member" in dash.peers.body.value
        split = {"worker_percentage": 75, "verifier_percentage": 20, "platform_fee_percentage": 5}
        cid = desk.propose("alice", {"reward_settings": split}, description="verifiers +10")
        assert dash.feed.wait_until(lambda: len(dash.feed.proposals()) == 1, 10)
        assert len(dash.policy.buttons.children) == 1  # one open proposal, with its buttons
        dash.policy.vote("alice", str(cid), approve=True)
        assert "1 of 2" in dash.policy.last_action.value
        clock.advance(1_000)  # (at the same instant the same vote would be the same bytes)
        dash.policy.vote("alice", str(cid), approve=True)  # a second vote is refused
        assert "DoubleVote" in dash.policy.last_action.value
        assert "DoubleVote" in dash.messages.value
        yes = dash.policy.buttons.children[0].children[1]
        dash.policy.voter.value = "bob"
        yes.click()  # the button does what vote() does
        assert "Activated" in dash.policy.last_action.value
        assert dash.feed.policy().policy_version == 2
        assert "version 2" in dash.policy.body.value and "75 %" in dash.policy.body.value
        assert dash.policy.buttons.children == ()
        result = m.publish(wasm=HELLO, input=b"after vote", fee=100).result(timeout=60)
        roles: dict[str, int] = {}
        for p in result.settlement.payouts:
            roles[p.role] = roles.get(p.role, 0) + p.amount
        roles.pop("refund", None)
        price = handle_price(roles)
        assert (roles["worker"], roles["verifier"], roles["platform"]) == (
            price * 75 // 100, price * 20 // 100, price - price * 75 // 100 - price * 20 // 100
        )  # fmt: skip
        dash.close()
        assert m.node.verify_ledger().ok


def handle_price(roles: dict[str, int]) -> int:
    return roles["worker"] + roles["verifier"] + roles["platform"]


def test_offline_dashboard_state_from_a_ledger_file(mesh):
    mesh.publish(wasm=HELLO, input=b"offline", fee=100).result(timeout=60)
    feed = MeshFeed.from_ledger(mesh.node.ledger_path)
    assert len(feed.tasks) == 1 and feed.errors == []
    # four workers and the publisher, and the federation's treasury if the cheater was
    # chosen (its slash is paid there)
    accounts = set(feed.balances()["account"].to_list())
    assert len(accounts) in (5, 6)
    assert len(accounts - {mesh.node.federation}) == 5


def test_a_waiting_task_says_why_in_the_dashboard(tmp_path):
    import warnings

    from meshbench.core.errors import MeshWarning
    from meshbench.core.policy import MeshPolicyFragment

    clock = ManualClock()
    policy = {"verification_quorum": {"minimum_verifiers": 3}}
    with Mesh.in_process(workers=2, data_dir=tmp_path / "m", clock=clock, policy=policy) as mesh:
        dash = Dashboard(mesh)
        try:
            dash.form.module.value = HELLO
            dash.form.verifiers.value = 2
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MeshWarning)  # said at once: tested elsewhere
                handle = dash.form.publish()
            assert handle is not None
            cid = str(handle.cid)
            why = "needs 3 verifiers, 1 eligible: waiting for workers"
            assert dash.feed.wait_until(lambda: why in (dash.feed.why(cid) or ""), 30)
            # the Tasks tab, the form's status line and the header all say it
            assert dash.tabs.get_title(0) == "Tasks"
            assert why in dash.tasks.body.value
            assert "k raised from 2 to 3 by policy minimum_verifiers" in dash.tasks.body.value
            assert f"waiting: {why}" in dash.form.status.value
            assert "1 waiting" in dash.header.value
            assert why in dash.snapshot_html()
            late = MeshFeed.attach(mesh.node)  # a feed attached while the task waits
            assert late.why(cid) == dash.feed.why(cid)
            # the mesh is made able to proceed: the reason goes once the window reopens
            mesh.set_policy(
                MeshPolicyFragment(updates={"verification_quorum": {"minimum_verifiers": 1}})
            )
            window = mesh.policy.selection.offer_window_ms
            clock.advance(window)
            assert handle.result(timeout=30).accepted
            assert dash.feed.wait_until(lambda: dash.feed.why(cid) is None, 10)
            assert late.wait_until(lambda: late.why(cid) is None and not late.waiting, 10)
            late.detach()
            assert dash.feed.wait_until(lambda: settled(dash.feed, 1), 10)
            assert "waiting" not in dash.form.status.value
            assert "waiting" not in dash.header.value
            assert why not in dash.tasks.body.value
        finally:
            dash.close()
        assert not dash.feed.attached


def test_a_feed_attached_while_a_task_waits_hears_when_it_proceeds(tmp_path):
    import warnings

    from meshbench.core.errors import MeshWarning
    from meshbench.core.policy import MeshPolicyFragment
    from meshbench.testing.netmesh import wait_until

    clock = ManualClock()
    policy = {"verification_quorum": {"minimum_verifiers": 3}}
    with Mesh.in_process(workers=2, data_dir=tmp_path / "m", clock=clock, policy=policy) as mesh:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MeshWarning)
            handle = mesh.publish(wasm=HELLO, input=b"", fee=100, verifiers=2)
        wait_until(lambda: handle.why is not None and "verifiers" in handle.why, 30, "a reason")
        feed = MeshFeed.attach(mesh.node)  # nobody listened when the reason was set
        try:
            assert feed.why(str(handle.cid)) == handle.why
            mesh.set_policy(
                MeshPolicyFragment(updates={"verification_quorum": {"minimum_verifiers": 1}})
            )
            clock.advance(mesh.policy.selection.offer_window_ms)
            assert handle.result(timeout=30).accepted
            assert feed.wait_until(lambda: feed.why(str(handle.cid)) is None, 10)
            assert feed.waiting == {}
        finally:
            feed.detach()
