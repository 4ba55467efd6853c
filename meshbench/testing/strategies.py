"""Hypothesis strategies for every meshbench model type, derived from the field declarations.

``models(cls)`` builds valid instances of any :class:`~meshbench.core.model.Model` from its
msgspec type information (ranges, lengths, nested types), with a few domain overrides (DIDs
are real did:keys, CIDs real CIDs of the right codec, commitments that open).
"""

from __future__ import annotations

import string
from typing import Any

import msgspec
from hypothesis import strategies as st

from meshbench.core import encoding
from meshbench.core.errors import MeshError
from meshbench.core.model import Model, Signed, model_types
from meshbench.core.policy import MeshPolicy, RewardSettings, VerificationQuorum
from meshbench.core.types import ExecutionReceipt, result_commitment
from meshbench.testing.factories import make_identity

__all__ = [
    "actions",
    "any_model",
    "dids",
    "ipld_values",
    "models",
    "policies",
    "raw_cids",
    "reward_settings",
    "signed_models",
]

IDENTITIES = [make_identity(i) for i in range(8)]
dids = st.sampled_from([i.did for i in IDENTITIES])
raw_cids = st.binary(max_size=64).map(encoding.blob_cid)
object_cids = st.binary(max_size=64).map(lambda b: encoding.object_cid(b"\xa1" + b))
_text = st.text(alphabet=string.ascii_letters + string.digits + " _-./éß☃", max_size=24)

# fields whose CID codec is fixed by the type's rules
_RAW_CID_FIELDS = {"wasm_cid", "input_cid", "output_cid", "ciphertext_cid"}
_TIME_FIELDS = {"created_at", "issued_at", "timestamp", "deadline", "expires_at", "at"}


def _for_type(t: msgspec.inspect.Type, field: str) -> st.SearchStrategy[Any]:
    mi = msgspec.inspect
    if field in _TIME_FIELDS:
        return st.integers(0, 2**50)
    if field == "output":
        return st.sampled_from(["stdout", "/out/result.bin"])
    if isinstance(t, mi.IntType):
        lo = t.ge if t.ge is not None else -(2**31)
        hi = t.le if t.le is not None else 2**53
        return st.integers(lo, hi)
    if isinstance(t, mi.FloatType):
        lo = t.ge if t.ge is not None else -1e9
        hi = t.le if t.le is not None else 1e9
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if isinstance(t, mi.StrType):
        if t.pattern and t.pattern.startswith("^did:key"):
            return dids
        if t.pattern:
            return st.from_regex(t.pattern, fullmatch=True).filter(
                lambda s: len(s) <= (t.max_length or 10**6) and len(s) >= (t.min_length or 0)
            )
        return _text.filter(lambda s: t.min_length is None or len(s) >= t.min_length).map(
            lambda s: s[: t.max_length] if t.max_length else s
        )
    if isinstance(t, mi.BytesType):
        lo = t.min_length or 0
        hi = t.max_length if t.max_length is not None else 96
        return st.binary(min_size=lo, max_size=min(hi, lo + 96))
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.CustomType) and t.cls is encoding.CID:
        return raw_cids if field in _RAW_CID_FIELDS else object_cids
    if isinstance(t, mi.StructType):
        return models(t.cls)
    if isinstance(t, mi.VarTupleType | mi.ListType):
        hi = min(t.max_length if t.max_length is not None else 3, 3)
        return st.lists(_for_type(t.item_type, field), min_size=t.min_length or 0, max_size=hi).map(
            tuple
        )
    if isinstance(t, mi.UnionType):
        return st.one_of([_for_type(u, field) for u in t.types])
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.DictType):
        return st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 9), max_size=2)
    raise TypeError(f"no strategy for {t!r}")


@st.composite
def _build(draw: st.DrawFn, cls: type[Model]) -> Model:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    kwargs = {f.name: draw(_for_type(f.type, f.name)) for f in info.fields if f.name != "signature"}
    if cls is ExecutionReceipt:
        kwargs["result_commitment"] = result_commitment(
            kwargs["task_cid"], kwargs["worker"], kwargs["output_cid"], kwargs["salt"]
        )
    if "policy" in kwargs and "federation_did" in kwargs and "policy_cid" not in kwargs:
        kwargs["policy"] = msgspec.structs.replace(  # FederationCreated names itself
            kwargs["policy"], federation=kwargs["federation_did"]
        )
    if "policy" in kwargs and "policy_cid" in kwargs:  # MeshPolicyActivated
        kwargs["policy_cid"] = kwargs["policy"].cid
        kwargs["policy_version"] = kwargs["policy"].policy_version
    if "payouts" in kwargs and "total" in kwargs:  # RewardDistributed conserves
        kwargs["total"] = sum(p.amount for p in kwargs["payouts"])
    for key in ("deadline", "expires_at"):
        if key in kwargs:
            start = kwargs.get("created_at", kwargs.get("issued_at", kwargs.get("timestamp", 0)))
            kwargs[key] = start + 1 + kwargs[key] % 10**9
    try:
        obj = cls(**kwargs)
    except MeshError:
        from hypothesis import assume

        assume(False)
        raise
    if isinstance(obj, Signed):
        signer = next(i for i in IDENTITIES if i.did == obj.signer)
        obj = obj.sign(signer)
    return obj


def models(cls: type[Model]) -> st.SearchStrategy[Model]:
    """Valid instances of ``cls`` (signed by their signer when ``cls`` is Signed)."""
    if cls.__name__ == "MeshPolicy":
        return st.tuples(st.integers(0, 100), st.integers(0, 100), st.integers(50, 100)).map(
            _policy
        )
    if cls.__name__ == "MeshPolicyFragment":
        return st.sampled_from(
            [{"min_fee": 5}, {"reward_settings": {"use_reputation_weighting": False}}]
        ).map(_fragment)
    return _build(cls)


def _policy(args: tuple[int, int, int]) -> Model:
    from meshbench.core.policy import MeshPolicy

    worker, verifier, quorum = args
    verifier = min(verifier, 100 - worker)
    rewards = {
        "worker_percentage": worker,
        "verifier_percentage": verifier,
        "platform_fee_percentage": 100 - worker - verifier,
    }
    return MeshPolicy().apply(
        _fragment(
            {"reward_settings": rewards, "verification_quorum": {"required_percentage": quorum}}
        )
    )


def _fragment(updates: dict[str, Any]) -> Model:
    from meshbench.core.policy import MeshPolicyFragment

    return MeshPolicyFragment(updates=updates)


def any_model() -> st.SearchStrategy[Model]:
    return st.sampled_from(sorted(model_types().values(), key=lambda c: c.__name__)).flatmap(models)


def signed_models() -> st.SearchStrategy[Signed]:
    signed = [c for c in model_types().values() if issubclass(c, Signed)]
    return st.sampled_from(sorted(signed, key=lambda c: c.__name__)).flatmap(models)


# --- protocol properties ------------------------------------------------------------------
@st.composite
def reward_settings(draw: st.DrawFn) -> RewardSettings:
    w = draw(st.integers(0, 100))
    v = draw(st.integers(0, 100 - w))
    return RewardSettings(
        worker_percentage=w,
        verifier_percentage=v,
        platform_fee_percentage=100 - w - v,
        use_reputation_weighting=draw(st.booleans()),
    )


@st.composite
def policies(draw: st.DrawFn) -> MeshPolicy:
    lo = draw(st.integers(1, 5))
    hi = draw(st.integers(lo, 9))
    return MeshPolicy(
        reward_settings=draw(reward_settings()),
        verification_quorum=VerificationQuorum(
            required_percentage=draw(st.integers(50, 100)),
            minimum_verifiers=lo,
            maximum_verifiers=hi,
        ),
    )


def actions(n_peers: int, max_tasks: int = 3) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """Random protocol stimuli: (kind, args...) tuples interpreted by the property test."""
    peer = st.integers(0, n_peers - 1)
    task = st.integers(0, max_tasks - 1)
    output = st.sampled_from(["good", "bad"])
    one = st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 400)),
        st.tuples(st.just("offer"), task, peer, st.integers(0, 300)),
        st.tuples(
            st.just("fire"),
            task,
            st.sampled_from(["offers", "execution", "verification", "deadline"]),
        ),
        st.tuples(st.just("commit"), task, peer, output),
        st.tuples(st.just("commit_worker"), task, output),
        st.tuples(st.just("reveal"), task),
        st.tuples(st.just("verdict"), task, peer),
        st.tuples(st.just("advance"), st.integers(0, 40 * 60 * 1000)),
        st.tuples(
            st.just("stake"),
            peer,
            st.sampled_from(["bond", "unbond", "withdraw"]),
            st.integers(1, 500),
        ),
    )
    return st.lists(one, min_size=1, max_size=40)


ipld_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
