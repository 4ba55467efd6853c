"""The Dask backend's direct calls (the node calls the chosen worker over Dask's comms, not
through the scheduler), the module each worker keeps for them, the batching of answers while
a call is out, and the Dask settings of an embedded cluster."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshbench.core.encoding import blob_cid
from meshbench.core.errors import InvalidModule, ProtocolError
from meshbench.runtime import dask_backend
from meshbench.runtime.dask_backend import DIRECT_OP, ModuleNotHeld, _Batcher, _held_module
from meshbench.runtime.mesh import Mesh

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm"


def _mesh_prefixes(dask_scheduler: Any = None) -> list[str]:
    """The task prefixes of the mesh's Dask tasks the scheduler has seen."""
    return [name for name in dask_scheduler.task_prefixes if name.startswith("mesh-")]


def _forget_modules() -> int:
    """Have this worker process let go of every module it kept for direct calls."""
    with dask_backend._MODULES_LOCK:
        held = len(dask_backend._MODULES)
        dask_backend._MODULES.clear()
    return held


def _held() -> list[str]:
    return list(dask_backend._MODULES)


def _profiling(dask_worker: Any = None) -> tuple[bool, str]:
    import dask

    return (
        bool(dask.config.get("distributed.worker.profile.enabled")),
        str(dask.config.get("distributed.admin.tick.interval")),
    )


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with Mesh.local(workers=3, data_dir=tmp_path_factory.mktemp("direct")) as m:
        yield m


@pytest.mark.timeout(120)
def test_direct_calls_settle_tasks_without_a_dask_task_and_send_a_module_once(mesh: Mesh) -> None:
    backend = mesh.node.backend
    assert backend.direct
    handles = mesh.map(WASM / "sha256.wasm", [b"a", b"b", b"c", b"d"], progress=False)
    assert all(h.result(60).accepted for h in handles)
    # nothing of the mesh went through the scheduler as a task
    assert mesh.client.run_on_scheduler(_mesh_prefixes) == []
    # each worker holds the module, sent to it once (it ran several executions)
    wasm_cid = str(blob_cid((WASM / "sha256.wasm").read_bytes()))
    held = mesh.client.run(_held)
    assert all(wasm_cid in h for h in held.values()), held
    sent = [address for cid, address in backend._modules_sent if str(cid) == wasm_cid]
    assert sorted(sent) == sorted(held)
    assert backend.modules_resent == 0
    assert mesh.node.verify_ledger().ok


@pytest.mark.timeout(120)
def test_a_worker_that_let_its_module_go_gets_it_again(mesh: Mesh) -> None:
    backend = mesh.node.backend
    assert mesh.map(WASM / "hello.wasm", [b"first"], progress=False)[0].result(60).accepted
    assert sum(mesh.client.run(_forget_modules).values()) >= 3  # every worker had it
    resent = backend.modules_resent
    handle = mesh.publish(wasm=WASM / "hello.wasm", input=b"after the workers forgot it")
    assert handle.result(60).accepted
    assert backend.modules_resent >= resent + 3  # the worker and both verifiers asked for it
    assert mesh.node.verify_ledger().ok


@pytest.mark.timeout(120)
def test_the_same_mesh_over_dask_tasks(tmp_path: Path) -> None:
    """``direct=False``: executions are Dask tasks pinned to the chosen worker."""
    with Mesh.local(workers=3, data_dir=tmp_path, direct=False) as m:
        handles = m.map(WASM / "sha256.wasm", [b"a", b"b"], progress=False)
        assert all(h.result(60).accepted for h in handles)
        prefixes = m.client.run_on_scheduler(_mesh_prefixes)
        assert {p.split("-")[1] for p in prefixes} == {"worker", "verifier"}, prefixes
        assert m.node.verify_ledger().ok


@pytest.mark.timeout(120)
def test_direct_calls_go_on_each_worker_s_lane_or_over_dask_s_comm(mesh: Mesh) -> None:
    backend = mesh.node.backend
    assert mesh.map(WASM / "hello.wasm", [b"lanes"], progress=False)[0].result(60).accepted
    workers = set(mesh.client.scheduler_info()["workers"])
    assert set(backend._lane_by_address) == workers  # one lane each, opened on first use
    lanes, comms = backend.lane_calls, backend.comm_calls
    backend.lanes = False
    try:
        assert mesh.map(WASM / "hello.wasm", [b"comm"], progress=False)[0].result(60).accepted
    finally:
        backend.lanes = True
    assert backend.lane_calls == lanes and backend.comm_calls > comms
    assert mesh.node.verify_ledger().ok


@pytest.mark.timeout(120)
def test_a_lane_that_closes_leaves_its_calls_to_dask_s_comm_until_it_opens_again(
    mesh: Mesh,
) -> None:
    backend = mesh.node.backend
    assert mesh.map(WASM / "hello.wasm", [b"before"], progress=False)[0].result(60).accepted
    closed = dict(backend._lane_by_address)
    for lane in closed.values():
        lane.close()
    comms = backend.comm_calls
    handles = mesh.map(WASM / "hello.wasm", [b"after 1", b"after 2"], progress=False)
    assert all(h.result(60).accepted for h in handles)
    reopened = backend._lane_by_address
    assert set(reopened) == set(closed)
    assert all(reopened[a] is not closed[a] and reopened[a].closed is None for a in closed)
    assert backend.comm_calls >= comms  # a call that met a closed lane went over the comm


@pytest.mark.timeout(60)
def test_a_worker_gives_its_lane_over_dask_s_comm_and_refuses_a_lane_without_it(
    mesh: Mesh,
) -> None:
    import socket

    address = next(iter(mesh.client.scheduler_info()["workers"]))

    async def call() -> Any:
        return await mesh.client.rpc(address).meshbench_call(kind="lane")

    port, token = mesh.client.sync(call)
    assert isinstance(port, int) and len(token) == 32
    host = dask_backend._tcp_host(address)
    guess = socket.create_connection((host, port), timeout=10)
    guess.sendall(bytes(32) + b"\x00\x00\x00\x01\x90")  # a wrong secret, then a frame
    assert guess.recv(10) == b""  # closed, nothing answered
    guess.close()
    assert mesh.map(WASM / "hello.wasm", [b"still served"], progress=False)[0].result(60).accepted


@pytest.mark.timeout(60)
def test_a_direct_call_the_worker_does_not_know_is_answered_with_an_error(mesh: Mesh) -> None:
    address = next(iter(mesh.client.scheduler_info()["workers"]))

    async def call() -> Any:
        return await mesh.client.rpc(address).meshbench_call(kind="bogus", items=[])

    answer = mesh.client.sync(call)
    assert isinstance(answer, ProtocolError) and "bogus" in str(answer)
    assert DIRECT_OP == "meshbench_call"


def test_a_module_sent_under_another_cid_is_refused_and_not_kept() -> None:
    good, other = b"\x00asm\x01\x00\x00\x00", b"\x00asm\x01\x00\x00\x00\x00"
    cid = str(blob_cid(good))
    with pytest.raises(InvalidModule):
        _held_module(cid, other)
    with pytest.raises(ModuleNotHeld):  # nothing was kept under that CID
        _held_module(cid, None)
    assert _held_module(cid, good) == good
    assert _held_module(cid, None) == good
    with dask_backend._MODULES_LOCK:
        dask_backend._MODULES.pop(cid, None)


def test_modules_kept_are_bounded_newest_used_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dask_backend, "MODULES_KEPT", 2)
    monkeypatch.setattr(dask_backend, "_MODULES", type(dask_backend._MODULES)())
    mods = [b"\x00asm\x01\x00\x00\x00" + bytes([i]) for i in range(3)]
    cids = [str(blob_cid(m)) for m in mods]
    _held_module(cids[0], mods[0])
    _held_module(cids[1], mods[1])
    _held_module(cids[0], None)  # used: newest now
    _held_module(cids[2], mods[2])  # the oldest used (1) goes
    assert list(dask_backend._MODULES) == [cids[0], cids[2]]
    with pytest.raises(ModuleNotHeld):
        _held_module(cids[1], None)


def test_answers_for_a_worker_wait_while_a_call_to_it_is_out_then_go_together() -> None:
    calls: list[tuple[str, list[Any]]] = []
    out: list[tuple[list[Any], Any]] = []
    sent = threading.Event()

    def send(address: str, items: list[tuple[Any, Any]]) -> None:
        calls.append((address, [i for i, _ in items]))
        out.append(([d for _, d in items], address))  # answered later, by the test
        sent.set()

    delivered: list[Any] = []
    with cf.ThreadPoolExecutor(2) as pool:
        batcher = _Batcher(pool, send, one_in_flight=True)
        batcher.add("a", 1, delivered.append)
        assert sent.wait(5)
        sent.clear()
        for i in (2, 3, 4):  # the call with 1 is out: these wait
            batcher.add("a", i, delivered.append)
        batcher.add("b", 9, delivered.append)  # another worker is not held up
        assert sent.wait(5)
        assert calls == [("a", [1]), ("b", [9])]
        sent.clear()
        delivers, _ = out[0]
        for d in delivers:
            d("answer 1")  # the first call returns: what waited goes in one call
        assert sent.wait(5)
        assert calls[2] == ("a", [2, 3, 4])
        assert batcher.batches == 3 and batcher.items == 5
    assert delivered == ["answer 1"]


@pytest.mark.timeout(60)
def test_an_embedded_cluster_runs_without_dask_s_profiler_unless_asked(mesh: Mesh) -> None:
    assert set(mesh.client.run(_profiling).values()) == {(False, "200ms")}


@pytest.mark.timeout(120)
def test_dask_settings_given_go_over_the_embedded_ones(tmp_path: Path) -> None:
    with Mesh.local(
        workers=2,
        data_dir=tmp_path,
        dask_config={"distributed.worker.profile.enabled": True},
    ) as m:
        assert set(m.client.run(_profiling).values()) == {(True, "200ms")}


def test_a_task_is_decoded_once_per_worker_and_only_a_task(monkeypatch: pytest.MonkeyPatch) -> None:
    from meshbench.core.errors import MeshError
    from meshbench.testing.factories import make_identity, make_task

    monkeypatch.setattr(dask_backend, "TASKS_KEPT", 2)
    monkeypatch.setattr(dask_backend, "_TASKS", type(dask_backend._TASKS)())
    tasks = [make_task(make_identity(1), nonce=i, sign=True) for i in range(3)]
    first = dask_backend._task_of(tasks[0].encode())
    assert first == tasks[0]
    assert dask_backend._task_of(bytes(tasks[0].encode())) is first  # the same bytes: kept
    for t in tasks[1:]:
        dask_backend._task_of(t.encode())
    assert len(dask_backend._TASKS) == 2 and tasks[0].encode() not in dask_backend._TASKS
    with pytest.raises(ProtocolError, match="a task was asked for"):  # an object, not a task
        dask_backend._task_of(_not_a_task())
    unsigned = make_task(make_identity(1), nonce=9).encode()
    with pytest.raises(MeshError):  # checked as any decoded object is: unsigned refused
        dask_backend._task_of(unsigned)
    assert unsigned not in dask_backend._TASKS


def _not_a_task() -> bytes:
    from meshbench.core.types import CapabilityScope

    return CapabilityScope().encode()


@pytest.mark.timeout(120)
def test_workers_this_client_cannot_call_directly_are_reached_through_the_scheduler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that reaches only the scheduler (the workers' addresses are not routable from
    it): the backend's first direct call fails, and the mesh settles its tasks over Dask tasks
    and Client.run, saying so once."""
    import logging

    monkeypatch.setattr(dask_backend.DaskBackend, "_rpc", lambda self, address: _Unreachable())
    with (
        caplog.at_level(logging.WARNING, logger="meshbench.dask"),
        Mesh.local(workers=3, data_dir=tmp_path) as m,
    ):
        assert not m.node.backend.direct
        handle = m.publish(wasm=WASM / "hello.wasm", input=b"through the scheduler")
        assert handle.result(60).accepted
    assert sum("direct calls to the Dask workers failed" in r.message for r in caplog.records) == 1


class _Unreachable:
    """A connection pool whose every worker is out of reach."""

    def __getattr__(self, op: str) -> Any:
        async def call(**kwargs: Any) -> Any:
            raise OSError(f"no route to the worker ({op})")

        return call
