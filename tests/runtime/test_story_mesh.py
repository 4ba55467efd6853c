"""mesh.story(task) on a running mesh: a dishonest worker's task, told from the ledger."""

from __future__ import annotations

from pathlib import Path

from meshbench.runtime.mesh import Mesh

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm"


def test_story_tells_how_a_wrong_result_was_caught(tmp_path: Path) -> None:
    with Mesh.in_process(
        workers=5,
        data_dir=tmp_path,
        behaviours={0: "wrong"},
        policy={"verification_quorum": {"minimum_verifiers": 2}},
    ) as mesh:
        handles = [
            mesh.publish(WASM / "sha256.wasm", f"story {i}".encode(), fee=100, verifiers=2)
            for i in range(6)
        ]
        results = [h.result(timeout=60) for h in handles]
        for h, r in zip(handles, results, strict=True):
            story = h.story()
            assert story.outcome == r.outcome
            assert story.waiting is None and "waiting:" not in str(story)
            whats = [line.what for line in story.lines]
            assert whats[0] == "TaskIntent" and "published" in whats and "payouts" in whats
            if r.outcome == "Rejected":
                assert "slashed" in whats and "decision Rejected" in whats
            else:
                assert "decision Accepted" in whats


def test_a_task_the_mesh_cannot_meet_warns_at_once_and_says_why(tmp_path: Path) -> None:
    import pytest

    from meshbench.core.errors import MeshWarning
    from meshbench.testing.netmesh import wait_until

    policy = {"verification_quorum": {"minimum_verifiers": 3}}
    with Mesh.in_process(workers=2, data_dir=tmp_path, policy=policy) as mesh:
        with pytest.warns(MeshWarning, match="needs a worker and 3 verifiers, 2 bonded"):
            handle = mesh.publish(WASM / "hello.wasm", b"", fee=100, verifiers=2)
        wait_until(lambda: handle.why is not None and "verifiers" in handle.why, 30, "a reason")
        assert "needs 3 verifiers, 1 eligible: waiting for workers" in handle.why
        assert "k raised from 2 to 3 by policy minimum_verifiers" in handle.why
        states = []
        with pytest.raises(TimeoutError, match="needs 3 verifiers"):
            for state, _why in handle.watch(timeout=0.5):
                states.append(state)
        assert states and states[0] in ("Published", "Offered")
        with pytest.raises(TimeoutError, match="waiting for workers"):
            handle.result(timeout=0.2)
        # the story ends with the reason, as the node gives it
        story = mesh.story(handle)
        assert story.waiting == handle.why
        assert str(story).splitlines()[-1].strip() == f"waiting: {handle.why}"
        assert mesh.story(str(handle.cid)).waiting == handle.why


def test_a_module_published_again_is_stored_once_unless_it_went(tmp_path: Path) -> None:
    """The same bytes object published with every task is hashed and written once (the mesh
    remembers its CID while it holds the object); a blob deleted meanwhile is stored again,
    and equal bytes in another object are stored as any bytes are."""
    from meshbench.runtime import mesh as mesh_mod

    module = (WASM / "sha256.wasm").read_bytes()
    assert len(module) >= mesh_mod.STORED_KEPT_MIN_BYTES
    with Mesh.in_process(workers=3, data_dir=tmp_path) as mesh:
        store = mesh.node.blobs
        puts: list[int] = []
        real_put = store.put
        store.put = lambda source, **kw: puts.append(len(source)) or real_put(source, **kw)
        first = mesh.publish(module, b"one", fee=1_000)
        second = mesh.publish(module, b"two", fee=1_000)
        assert puts.count(len(module)) == 1
        store.delete(first.task.wasm_cid)
        third = mesh.publish(module, b"three", fee=1_000)
        assert puts.count(len(module)) == 2 and store.has(third.task.wasm_cid)
        mesh.publish(bytes(bytearray(module)), b"four", fee=1_000)  # equal bytes, new object
        assert puts.count(len(module)) == 3
        for h in (first, second, third):
            assert h.result(60).accepted
