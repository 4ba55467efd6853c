"""MeshPolicy: every parameter a federation governs, with upstream defaults and validation.

Defaults follow ``reference.md`` (upstream ICN), except the reward split, which follows the
spec: worker 90, verifier 10, platform 0. A :class:`MeshPolicyFragment` holds only the
fields a proposal changes (nested sections may be partial); :meth:`MeshPolicy.apply`
overwrites exactly those fields, raises the version by one and records the previous
policy's CID.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal

import msgspec
from msgspec import Meta

from meshbench.core.encoding import CID
from meshbench.core.errors import PolicyValidationError, SchemaError
from meshbench.core.model import DID, Amount, Model
from meshbench.core.types import CapabilityScope

__all__ = [
    "DAY_S",
    "KNOWN_TOKENS",
    "MAX_CLOCK_SKEW_MS",
    "AuditPolicy",
    "BondingRequirements",
    "MeshPolicy",
    "MeshPolicyFragment",
    "PenaltyTable",
    "ResourcePrices",
    "RewardSettings",
    "SchedulingParams",
    "SelectionRules",
    "VerificationQuorum",
    "WorkerRewardRules",
]

DAY_S: Final = 24 * 3600
#: Token types a policy may name for bonds.
KNOWN_TOKENS: Final = frozenset({"ICN"})
Fraction = Annotated[float, Meta(ge=0.0, le=1.0)]
Percent = Annotated[int, Meta(ge=0, le=100)]
Seconds = Annotated[int, Meta(ge=1, le=365 * DAY_S)]


#: How far a participant's own timestamp may be from the ledger authority's clock (ms).
#: Money and votes are decided by the authority's time; a participant's claim outside this
#: window is refused, so a lying clock can neither backdate nor postdate anything.
MAX_CLOCK_SKEW_MS: Final = 120_000


class RewardSettings(Model, tag="RewardSettings"):
    worker_percentage: Percent = 90
    verifier_percentage: Percent = 10
    platform_fee_percentage: Percent = 0
    use_reputation_weighting: bool = True


class BondingRequirements(Model, tag="BondingRequirements"):
    min_stake: Amount = 100
    lock_period: Seconds = 7 * DAY_S
    tokens: tuple[Annotated[str, Meta(min_length=1, max_length=32)], ...] = ("ICN",)


class SchedulingParams(Model, tag="SchedulingParams"):
    use_fair_queuing: bool = True
    max_queue_length: Annotated[int, Meta(ge=1, le=1_000_000)] = 100
    reputation_priority_boost: Annotated[float, Meta(ge=0.0, le=100.0)] = 1.5
    task_timeout: Seconds = 30 * 60


class VerificationQuorum(Model, tag="VerificationQuorum"):
    required_percentage: Percent = 66
    minimum_verifiers: Annotated[int, Meta(ge=0, le=64)] = 3
    maximum_verifiers: Annotated[int, Meta(ge=0, le=64)] = 7
    verification_timeout: Seconds = 15 * 60

    def verifiers_for(self, requested: int) -> int:
        """How many verifiers a task that asks for ``requested`` is given: at least
        ``minimum_verifiers``, at most ``maximum_verifiers``."""
        return min(max(requested, self.minimum_verifiers), self.maximum_verifiers)


class PenaltyTable(Model, tag="PenaltyTable"):
    """Bond slashes, in percent of the offender's bonded stake; slashed tokens go to the
    federation treasury (the account named by the federation DID).

    ============================  ===================================================
    offence                       slash
    ============================  ===================================================
    worker's result rejected      ``wrong_result_percentage`` of the worker's bond
    verifier voted against quorum ``wrong_vote_percentage`` of the verifier's bond
    assigned worker never showed  ``no_show_percentage`` of the worker's bond
    ============================  ===================================================
    """

    wrong_result_percentage: Percent = 50
    wrong_vote_percentage: Percent = 25
    no_show_percentage: Percent = 10


class ResourcePrices(Model, tag="ResourcePrices"):
    """Milli-tokens per unit of each resource *above* ``base_capability_scope``.

    The minimum fee of a task is ``min_fee + ceil(sum(excess * price) / 1000)``, so a task
    within the base scope costs exactly ``min_fee`` and a larger one costs more.
    """

    per_memory_mb: Amount = 10
    per_million_cpu_cycles: Amount = 100
    per_gflop_gpu: Amount = 1000
    per_io_mb: Amount = 10


class WorkerRewardRules(Model, tag="WorkerRewardRules"):
    """How much of the worker share the worker earns; the rest is refunded to the publisher.

    earned = share * (100 if on time else late_percentage) / 100 * (quality if
    ``scale_by_quality`` else 1), where "on time" means the commitment arrived within the
    ETA of the worker's own offer and quality is its ``contribution_score`` (ppm precision).
    """

    late_percentage: Percent = 50
    scale_by_quality: bool = True


class SelectionRules(Model, tag="SelectionRules"):
    """Weights of the offer score (see ``meshbench.core.selection``) and scheduling windows."""

    reputation_weight: Fraction = 0.5
    cost_weight: Fraction = 0.3
    eta_weight: Fraction = 0.1
    capacity_weight: Fraction = 0.1
    #: How long offers are collected after a task is published (ms).
    offer_window_ms: Annotated[int, Meta(ge=0, le=24 * 3600 * 1000)] = 5_000
    #: Assignments of one task before it expires (a worker that fails is not chosen again).
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 3
    #: Draw verifiers only from federations other than the worker's.
    distinct_verifier_federation: bool = False
    #: Homogeneous redundancy: a GPU task's verifiers have the worker's ``gpu_class``, so
    #: floating point results can be compared exactly (BOINC's answer to FMA and friends).
    homogeneous_gpu_verifiers: bool = False

    OMIT_IF_DEFAULT: ClassVar[dict[str, Any]] = {"homogeneous_gpu_verifiers": False}


class AuditPolicy(Model, tag="AuditPolicy"):
    """Adaptive verification (off by default: every task is verified by a fixed quorum).

    When ``enabled``, a task is assigned to its worker alone; when the worker commits, the
    authority draws (from its signature over the commitment, which the worker cannot know
    beforehand and anyone can check afterwards) whether the result is audited: with
    probability ``rate_ppm`` at least, 1 for an identity on probation (its first
    ``probation_tasks`` verified results, again after any failure), and raised so that
    cheating never pays for the worker's bond (``q >= price / (price + bond)``, i.e. bond >=
    price x (1 - q) / q). ``auditors`` re-execute an audited result; on any mismatch (or
    silence) the referee decides: ``authority`` (the ledger authority re-executes: one honest
    auditor is enough) or ``panel`` (more verifiers are drawn and the quorum rules decide).
    Every accepted worker payment is held for ``challenge_window_ms`` (0: paid at once, no
    backtracking); a worker caught
    meanwhile has every held result re-checked by the referee, and a wrong one is clawed
    back to its publisher (the held payment, then the worker's bond). Tasks whose fee is at
    least ``full_fee`` (when not 0), and private tasks, are verified by the full quorum.
    """

    enabled: bool = False
    rate_ppm: Annotated[int, Meta(ge=1, le=1_000_000)] = 100_000
    auditors: Annotated[int, Meta(ge=1, le=16)] = 1
    probation_tasks: Annotated[int, Meta(ge=0, le=10_000)] = 5
    referee: Literal["authority", "panel"] = "authority"
    challenge_window_ms: Annotated[int, Meta(ge=0, le=365 * DAY_S * 1000)] = DAY_S * 1000
    full_fee: Amount = 0
    #: ``floor`` (ours: the floor, raised by probation and the stake rule) or
    #: ``inverse-streak`` (BOINC's adaptive replication, for comparison: after probation a
    #: result is audited with probability 1 / (verified results in a row), no stake rule)
    rate_rule: Literal["floor", "inverse-streak"] = "floor"
    #: the streak rule: after n results in a row not audited, the next is audited with
    #: probability at least n / ``unaudited_limit`` (0: off). Nobody can keep cheating for
    #: long unseen: P(n cheats in a row pass) falls like exp(-n^2 / (2 x limit))
    unaudited_limit: Annotated[int, Meta(ge=0, le=1_000_000)] = 200


class MeshPolicy(Model, tag="MeshPolicy"):
    """The active parameters of one federation's mesh."""

    federation: DID | None = None
    policy_version: Annotated[int, Meta(ge=1)] = 1
    alpha: Fraction = 0.6
    beta: Fraction = 0.3
    gamma: Fraction = 0.1
    lambda_: Fraction = msgspec.field(default=0.05, name="lambda")
    stake_weight: Fraction = 0.4
    min_fee: Amount = 10
    base_capability_scope: CapabilityScope = CapabilityScope()
    reward_settings: RewardSettings = RewardSettings()
    bonding_requirements: BondingRequirements = BondingRequirements()
    scheduling: SchedulingParams = SchedulingParams()
    verification_quorum: VerificationQuorum = VerificationQuorum()
    penalties: PenaltyTable = PenaltyTable()
    resource_prices: ResourcePrices = ResourcePrices()
    worker_rewards: WorkerRewardRules = WorkerRewardRules()
    selection: SelectionRules = SelectionRules()
    #: Require a valid federation Credential from workers and verifiers.
    require_credentials: bool = False
    #: Pin the execution engine identity (empty: any engine, outputs compared only).
    engine_pin: Annotated[str, Meta(max_length=256)] = ""
    #: Adaptive verification: sampled audits, probation, a referee, held payments.
    audit: AuditPolicy = AuditPolicy()
    previous_policy_cid: CID | None = None

    OMIT_IF_DEFAULT: ClassVar[dict[str, Any]] = {"audit": AuditPolicy()}

    def _validate(self) -> None:
        problems = policy_problems(self)
        if problems:
            raise PolicyValidationError("invalid MeshPolicy: " + "; ".join(problems))

    def apply(self, fragment: MeshPolicyFragment) -> MeshPolicy:
        """The policy that ``fragment`` makes of this one (version + 1, linked to this one)."""
        merged = _deep_merge(self.to_jsonable(), fragment.updates)
        merged["policy_version"] = self.policy_version + 1
        merged["previous_policy_cid"] = str(self.cid)
        return _policy_from_jsonable(merged)

    def min_fee_for(self, scope: CapabilityScope) -> int:
        """The lowest fee (and offer cost) allowed for a task of ``scope``."""
        base, price = self.base_capability_scope, self.resource_prices
        milli = (
            max(0, scope.memory_mb - base.memory_mb) * price.per_memory_mb
            + max(0, scope.cpu_cycles - base.cpu_cycles) * price.per_million_cpu_cycles // 10**6
            + max(0, scope.gpu_flops - base.gpu_flops) * price.per_gflop_gpu // 10**9
            + max(0, scope.io_mb - base.io_mb) * price.per_io_mb
        )
        return self.min_fee + -(-milli // 1000)

    def diff(self, other: MeshPolicy) -> dict[str, tuple[Any, Any]]:
        """Field paths whose values differ, as ``{path: (self's, other's)}``."""
        out: dict[str, tuple[Any, Any]] = {}
        _diff(self.to_jsonable(), other.to_jsonable(), "", out)
        return out


def policy_problems(p: MeshPolicy) -> list[str]:
    """Every rule ``p`` breaks, in words (empty when valid)."""
    out: list[str] = []
    r = p.reward_settings
    total = r.worker_percentage + r.verifier_percentage + r.platform_fee_percentage
    if total != 100:
        out.append(
            f"reward percentages sum to {total} (worker {r.worker_percentage} + verifier "
            f"{r.verifier_percentage} + platform {r.platform_fee_percentage}); they must sum to 100"
        )
    q = p.verification_quorum
    if not 50 <= q.required_percentage <= 100:
        out.append(f"required_percentage {q.required_percentage} must be within 50 to 100")
    if q.minimum_verifiers > q.maximum_verifiers:
        out.append(
            f"minimum_verifiers {q.minimum_verifiers} is above maximum_verifiers "
            f"{q.maximum_verifiers}"
        )
    unknown = sorted(set(p.bonding_requirements.tokens) - KNOWN_TOKENS)
    if unknown:
        out.append(f"unknown token types {unknown}; known: {sorted(KNOWN_TOKENS)}")
    if not p.bonding_requirements.tokens:
        out.append("bonding_requirements.tokens must name at least one token")
    if p.lambda_ >= 1.0:
        out.append("lambda (daily decay) must be below 1")
    sel = p.selection
    weights = sel.reputation_weight + sel.cost_weight + sel.eta_weight + sel.capacity_weight
    if weights <= 0.0:
        out.append("selection weights (reputation, cost, eta, capacity) must not all be 0")
    if q.maximum_verifiers < 1:
        out.append("maximum_verifiers must be at least 1 (a result needs a verifier)")
    a = p.audit
    if a.challenge_window_ms > p.bonding_requirements.lock_period * 1000:
        out.append(
            f"audit.challenge_window_ms {a.challenge_window_ms} exceeds the bond lock period "
            f"({p.bonding_requirements.lock_period} s): stake could leave before a clawback"
        )
    return out


class MeshPolicyFragment(Model, tag="MeshPolicyFragment"):
    """The fields a proposal changes, as a nested map of MeshPolicy's JSON form.

    Checked on construction: every key must name a MeshPolicy field (or a field of one of
    its sections) and every value must have that field's type. Whether the result is a valid
    policy (sums, ranges) depends on the policy it amends and is checked by ``apply``.
    """

    updates: dict[str, Any]

    def _validate(self) -> None:
        if not self.updates:
            raise ValueError("a fragment must change at least one field")
        _check_paths(self.updates, MeshPolicy, "")
        for key in ("policy_version", "previous_policy_cid", "federation"):
            if key in self.updates:
                raise PolicyValidationError(f"{key} is set by activation, not by a fragment")
        # type-check every value by applying to the defaults (ranges are checked by apply)
        try:
            _policy_from_jsonable(_deep_merge(MeshPolicy().to_jsonable(), self.updates))
        except PolicyValidationError:
            pass  # rule violations relative to the defaults are for apply to judge
        except SchemaError as exc:
            raise PolicyValidationError(f"invalid policy fragment: {exc}") from exc

    @classmethod
    def from_update_json(cls, text: str | bytes) -> MeshPolicyFragment:
        """Read a fragment in the spec's JSON form (``{"reward_settings": {...}, ...}``)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyValidationError(f"policy update is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise PolicyValidationError("a policy update is a JSON object of fields to change")
        try:
            return cls(updates=data)
        except SchemaError as exc:
            raise PolicyValidationError(str(exc)) from exc

    @classmethod
    def from_file(cls, path: str | Path) -> MeshPolicyFragment:
        return cls.from_update_json(Path(path).read_bytes())


def _policy_from_jsonable(data: dict[str, Any]) -> MeshPolicy:
    data = {k: v for k, v in data.items() if k != "@type"}
    try:
        return MeshPolicy.from_json(msgspec.json.encode(data))
    except SchemaError as exc:
        cause = exc.__cause__
        if isinstance(cause, PolicyValidationError):
            raise cause from None
        text = str(exc)
        if "invalid MeshPolicy:" in text and "must" in text:
            raise PolicyValidationError(text) from exc
        raise


def _deep_merge(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in updates.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _check_paths(updates: dict[str, Any], cls: type[Model], prefix: str) -> None:
    fields = dict(zip(cls.__struct_encode_fields__, cls.__struct_fields__, strict=True))
    defaults = cls()
    for key, value in updates.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise PolicyValidationError(f"unknown policy field {prefix}{key!r}; known: {known}")
        current = getattr(defaults, fields[key])
        if isinstance(current, Model):
            if not isinstance(value, dict):
                raise PolicyValidationError(f"{prefix}{key} is a section: give an object")
            _check_paths(value, type(current), f"{prefix}{key}.")


def _diff(a: Any, b: Any, path: str, out: dict[str, tuple[Any, Any]]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k != "@type":
                _diff(a.get(k), b.get(k), f"{path}.{k}" if path else k, out)
    elif a != b:
        out[path] = (a, b)
