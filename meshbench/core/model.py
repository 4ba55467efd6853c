"""The base of every meshbench value type: frozen, typed, validated, content-addressed.

A :class:`Model` is a frozen, keyword-only ``msgspec.Struct``. The same field declarations
give us:

* validation on construction *and* on decoding (types and ``Meta`` ranges, then the class's
  own ``_validate``), so an invalid object cannot exist;
* the IPLD form (``to_ipld``/``from_ipld``) with an ``@type`` tag, encoded as DAG-CBOR;
* a JSON form for people (CIDs as text, bytes as base64);
* a rich ``_repr_html_`` for notebooks.

A :class:`Signed` model carries a ``signature`` made by the DID in its ``SIGNER`` field, over
the DAG-CBOR encoding of the object without its ``signature``; its CID covers the whole
object, signature included. :func:`decode_object` is the only way bytes from outside become
objects: it decodes strictly, checks the schema, checks that the bytes are exactly the
canonical encoding of the result, checks the CID when one is expected, and checks the
signature.
"""

from __future__ import annotations

import html
import math
import threading
from collections.abc import Callable
from functools import cached_property
from typing import Annotated, Any, ClassVar, Final, Self, TypeVar

import msgspec
from msgspec import Meta

from meshbench.core import encoding, identity
from meshbench.core.encoding import CID
from meshbench.core.errors import (
    CIDMismatch,
    InvalidCID,
    InvalidSignature,
    NonCanonicalEncoding,
    SchemaError,
)

__all__ = [
    "DID",
    "MAX_AMOUNT",
    "Amount",
    "Count",
    "Model",
    "Signed",
    "TimestampMs",
    "decode_object",
    "model_types",
]

#: Token amounts are integers in the smallest unit, at most 2**53 - 1 so that every JSON
#: reader keeps them exact; anything larger is "absurd" and refused.
MAX_AMOUNT: Final = 2**53 - 1
Amount = Annotated[int, Meta(ge=0, le=MAX_AMOUNT)]
Count = Annotated[int, Meta(ge=0, le=2**63 - 1)]
#: Milliseconds since the Unix epoch, from the injected clock.
TimestampMs = Annotated[int, Meta(ge=0, le=2**53 - 1)]
DID = Annotated[str, Meta(pattern=r"^did:key:z[1-9A-HJ-NP-Za-km-z]{40,60}$", max_length=80)]

_REGISTRY: dict[str, type[Model]] = {}
T = TypeVar("T", bound="Model")


class _ModelMeta(msgspec.StructMeta):
    """Every model's own fields are keyword-only too (msgspec does not inherit kw_only)."""

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kw: Any):
        kw.setdefault("kw_only", True)
        cls = super().__new__(mcls, name, bases, ns, **kw)
        if isinstance(kw.get("tag"), str):  # concrete types name their tag; bases do not
            _REGISTRY[kw["tag"]] = cls
        return cls


class Model(
    msgspec.Struct,
    metaclass=_ModelMeta,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="@type",
    tag=True,
    dict=True,  # room for cached_property (cid, encoding)
):
    """Base of every value type. Subclasses declare fields and may override ``_validate``."""

    #: Fields added after objects of this type were already in use: left out of the IPLD
    #: form while they hold this default, so older objects keep their bytes and CIDs (an
    #: encoding that spells the default out is not canonical and is refused).
    OMIT_IF_DEFAULT: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        if getattr(_CHECKED, "by_msgspec", False):
            _check_floats(self)  # the rest msgspec checked while building it
        else:
            _check_fields(self)
        try:
            self._validate()
        except ValueError as exc:
            raise SchemaError(f"invalid {type(self).__name__}: {exc}") from exc

    def _validate(self) -> None:
        """Cross-field rules; raise ``ValueError`` with a message a user can act on."""

    # --- IPLD / DAG-CBOR --------------------------------------------------------------
    def to_ipld(self) -> dict[str, Any]:
        return _to_ipld(self)

    @classmethod
    def from_ipld(cls, value: Any) -> Self:
        """Validate an IPLD value (as decoded from DAG-CBOR) into this type."""
        if isinstance(value, dict) and "@type" not in value:
            raise SchemaError(f"object has no '@type'; expected {cls.__name__}")
        return _convert(value, cls)

    def encode(self) -> bytes:
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        return encoding.encode(self._ipld)

    @cached_property
    def _ipld(self) -> dict[str, Any]:
        """The IPLD form, computed once (frozen object; callers must not mutate it)."""
        return self.to_ipld()

    @cached_property
    def cid(self) -> CID:
        """The ``dag-cbor`` CIDv1 of the whole object (signature included)."""
        return encoding.object_cid(self.encode())

    @classmethod
    def decode(cls, data: bytes, *, expected_cid: CID | str | None = None) -> Self:
        obj = decode_object(data, expected_cid=expected_cid)
        if not isinstance(obj, cls):
            raise SchemaError(f"expected a {cls.__name__}, got a {type(obj).__name__}")
        return obj

    # --- JSON for people -----------------------------------------------------------------
    def to_json(self, *, indent: int = 2) -> str:
        raw = msgspec.json.encode(self, enc_hook=_json_enc_hook)
        return msgspec.json.format(raw, indent=indent).decode()

    def to_jsonable(self) -> dict[str, Any]:
        return msgspec.json.decode(msgspec.json.encode(self, enc_hook=_json_enc_hook))

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        try:
            return msgspec.json.decode(text, type=cls, dec_hook=_json_dec_hook, strict=True)
        except msgspec.ValidationError as exc:
            raise SchemaError(f"invalid {cls.__name__}: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise SchemaError(f"not valid JSON for {cls.__name__}: {exc}") from exc

    # --- notebooks ---
    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'><code>{html.escape(_short(v))}</code></td></tr>"
            for k, v in self.to_jsonable().items()
            if k != "@type"
        )
        title = html.escape(type(self).__name__)
        sig = ""
        if isinstance(self, Signed):
            sig = " ✔ signed" if self.signature else " (unsigned)"
        return (
            f"<div><b>{title}</b>{sig} <small><code>{self.cid}</code></small>"
            f"<table>{rows}</table></div>"
        )


class Signed(Model):
    """A model signed by the DID held in its ``SIGNER`` field."""

    SIGNER: ClassVar[str]
    signature: bytes = b""

    def signing_payload(self) -> bytes:
        return self._payload

    @cached_property
    def _payload(self) -> bytes:
        return self._both_encodings()[1]

    @cached_property
    def _encoded(self) -> bytes:
        return self._both_encodings()[0]

    def _both_encodings(self) -> tuple[bytes, bytes]:
        """The object's bytes and its signing payload from one encoding pass (a decoded
        object needs both: the canonical check and the signature check)."""
        full, payload = encoding.encode_with_and_without(self._ipld, "signature")
        self.__dict__.setdefault("_encoded", full)
        self.__dict__.setdefault("_payload", payload)
        return full, payload

    @property
    def signer(self) -> str:
        return getattr(self, self.SIGNER)

    def sign(self, who: identity.Identity) -> Self:
        if who.did != self.signer:
            raise InvalidSignature(
                f"{type(self).__name__}.{self.SIGNER} is {self.signer}, "
                f"but the signing key is {who.did}"
            )
        payload = self.__dict__.get("_payload")  # an unsigned object's, if it was asked for
        if payload is None:
            payload = encoding.encode({k: v for k, v in self._ipld.items() if k != "signature"})
        signature = who.sign(payload)
        with _checked_by_msgspec():  # every field but the signature is this checked object's
            signed = msgspec.structs.replace(self, signature=signature)
        ipld = {**self._ipld, "signature": signature}
        signed.__dict__["_ipld"] = ipld
        signed.__dict__["_payload"] = payload
        signed.__dict__["_encoded"] = encoding.encode(ipld)
        return signed

    def verify(self) -> Self:
        """Raise :class:`InvalidSignature` unless signed by ``self.signer``; return self."""
        if not self.signature:
            raise InvalidSignature(f"{type(self).__name__} {self.cid} is not signed")
        identity.verify(self.signer, self.signing_payload(), self.signature)
        return self

    @property
    def is_signed(self) -> bool:
        return bool(self.signature)


# The modules that define the protocol's object types (importing one registers its types).
_TYPE_MODULES: Final = (
    "meshbench.core.types",
    "meshbench.core.events",
    "meshbench.core.governance",
    "meshbench.core.policy",
)


def _load_types() -> None:
    """Register every protocol type, however little of meshbench was imported so far
    (``import meshbench`` itself loads its names lazily)."""
    import importlib

    for name in _TYPE_MODULES:
        importlib.import_module(name)


def model_types() -> dict[str, type[Model]]:
    """Every registered model type by its ``@type`` tag."""
    _load_types()
    return dict(_REGISTRY)


def decode_object(
    data: bytes,
    *,
    expected_cid: CID | str | None = None,
    verify_signature: bool = True,
    max_bytes: int = encoding.MAX_OBJECT_BYTES,
) -> Model:
    """Bytes from outside to a checked object: CID, strict decoding, schema, signature."""
    data = bytes(data)
    if expected_cid is not None:
        want = encoding.parse_cid(expected_cid, codec=encoding.DAG_CBOR)
        got = encoding.object_cid(data)
        if got != want:
            raise CIDMismatch(f"object hashes to {got}, not to the expected {want}")
    value = encoding.decode(data, max_bytes=max_bytes)
    if not isinstance(value, dict):
        raise SchemaError(f"a meshbench object is a map, not a {type(value).__name__}")
    tag = value.get("@type")
    cls = _REGISTRY.get(tag) if isinstance(tag, str) else None
    if cls is None and isinstance(tag, str):
        _load_types()
        cls = _REGISTRY.get(tag)
    if cls is None:
        raise SchemaError(f"unknown object type {tag!r}; known: {', '.join(sorted(_REGISTRY))}")
    obj = cls.from_ipld(value)
    if obj.encode() != data:
        raise NonCanonicalEncoding(
            f"bytes are valid DAG-CBOR but not the canonical encoding of a {tag} "
            "(a field was left out or has a non-canonical value)"
        )
    if verify_signature and isinstance(obj, Signed):
        obj.verify()
    return obj


# --- internals -----------------------------------------------------------------------------
#: Values that are their own IPLD form: a field holding one is copied without a call (most
#: fields are; this walk runs for every object made, signed or checked).
_SCALARS: Final = frozenset({str, int, bytes, bool, float, type(None), CID})


def _to_ipld(value: Any) -> Any:
    if isinstance(value, Model):
        out: dict[str, Any] = {"@type": value.__struct_config__.tag}
        omit = value.OMIT_IF_DEFAULT
        scalars = _SCALARS
        for name, key in zip(value.__struct_fields__, value.__struct_encode_fields__, strict=True):
            item = getattr(value, name)
            if omit and name in omit and item == omit[name]:
                continue
            out[key] = item if type(item) in scalars else _to_ipld(item)
        return out
    if isinstance(value, tuple | list):
        return [_to_ipld(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_ipld(v) for k, v in value.items()}
    return value


def _ipld_dec_hook(tp: type, obj: Any) -> Any:
    if tp is CID:
        if isinstance(obj, CID):
            return encoding.parse_cid(obj)
        raise TypeError(f"expected a CID (tag 42), got {type(obj).__name__}")
    raise NotImplementedError(tp)


def _json_dec_hook(tp: type, obj: Any) -> Any:
    if tp is CID:
        if isinstance(obj, str):
            return encoding.parse_cid(obj)
        raise TypeError(f"expected a CID string, got {type(obj).__name__}")
    raise NotImplementedError(tp)


def _json_enc_hook(obj: Any) -> Any:
    if isinstance(obj, CID):
        return str(obj)
    raise NotImplementedError(type(obj))


def _convert(value: Any, cls: type[T]) -> T:
    try:
        with _checked_by_msgspec():
            return msgspec.convert(value, cls, dec_hook=_ipld_dec_hook, strict=True)
    except msgspec.ValidationError as exc:
        raise SchemaError(f"invalid {cls.__name__}: {exc}") from exc
    except InvalidCID as exc:
        raise SchemaError(f"invalid {cls.__name__}: {exc}") from exc


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= 120 else text[:117] + "..."


# Field checks on construction. msgspec validates types and Meta constraints only while
# decoding; a Model must be valid however it was made, so we check here from the same
# declarations (compiled once per class).
#
# An object msgspec builds from a value (``msgspec.convert``, strict: decoding) has had every
# type and Meta constraint checked by msgspec from these declarations; so has each field of
# a checked object that ``Signed.sign`` copies with its signature. Checking them again was 8 %
# of the authority's driver thread (1,581 objects for 97 tasks, 164 us each), so while
# msgspec builds (``_CHECKED.by_msgspec``, per thread) only what msgspec does not check
# runs: that floats are finite (DAG-CBOR has no NaN or infinities; a Python value may).
_Check = Callable[[Any], str | None]
#: per class: every field's check, and those of the fields that can hold a float
_CHECKS: dict[type, tuple[list[tuple[str, _Check]], list[tuple[str, _Check]]]] = {}
_CHECKED = threading.local()


class _checked_by_msgspec:
    """While msgspec builds objects on this thread, they get only the float checks (the
    previous state is restored, so a build inside another keeps the outer one's). A class,
    not a generator: it runs for every object decoded or signed."""

    __slots__ = ("before",)

    def __enter__(self) -> None:
        self.before = getattr(_CHECKED, "by_msgspec", False)
        _CHECKED.by_msgspec = True

    def __exit__(self, *exc: object) -> None:
        _CHECKED.by_msgspec = self.before


def _checks(cls: type) -> tuple[list[tuple[str, _Check]], list[tuple[str, _Check]]]:
    checks = _CHECKS.get(cls)
    if checks is None:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        every = [(f.name, _checker(f.type)) for f in info.fields]
        floats = [c for c, f in zip(every, info.fields, strict=True) if _has_float(f.type)]
        checks = _CHECKS[cls] = (every, floats)
    return checks


def _run_checks(obj: Model, checks: list[tuple[str, _Check]]) -> None:
    for name, check in checks:
        problem = check(getattr(obj, name))
        if problem:
            raise SchemaError(f"invalid {type(obj).__name__}: {problem} - at `$.{name}`")


def _check_fields(obj: Model) -> None:
    _run_checks(obj, _checks(type(obj))[0])


def _check_floats(obj: Model) -> None:
    _run_checks(obj, _checks(type(obj))[1])


def _has_float(t: msgspec.inspect.Type) -> bool:
    """Whether a value of type ``t`` can hold a float (directly or in a container; a nested
    struct checks its own)."""
    mi = msgspec.inspect
    if isinstance(t, mi.FloatType):
        return True
    if isinstance(t, mi.VarTupleType | mi.ListType):
        return _has_float(t.item_type)
    if isinstance(t, mi.DictType):
        return _has_float(t.key_type) or _has_float(t.value_type)
    if isinstance(t, mi.UnionType):
        return any(_has_float(u) for u in t.types)
    return False


def _checker(t: msgspec.inspect.Type) -> _Check:
    mi = msgspec.inspect
    if isinstance(t, mi.IntType):
        return _bounded(lambda v: isinstance(v, int) and not isinstance(v, bool), "int", t)
    if isinstance(t, mi.FloatType):

        def check_float(v: Any) -> str | None:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return f"expected `float`, got `{type(v).__name__}`"
            if not math.isfinite(v):
                return "expected a finite float"
            return _range(v, t)

        return check_float
    if isinstance(t, mi.StrType):
        import re

        pattern = re.compile(t.pattern) if t.pattern else None

        def check_str(v: Any) -> str | None:
            if not isinstance(v, str):
                return f"expected `str`, got `{type(v).__name__}`"
            if t.max_length is not None and len(v) > t.max_length:
                return f"expected a string of at most {t.max_length} characters"
            if t.min_length is not None and len(v) < t.min_length:
                return f"expected a string of at least {t.min_length} characters"
            if pattern is not None and not pattern.search(v):
                return f"expected a string matching {t.pattern!r}, got {v[:60]!r}"
            return None

        return check_str
    if isinstance(t, mi.BytesType):

        def check_bytes(v: Any) -> str | None:
            if not isinstance(v, bytes):
                return f"expected `bytes`, got `{type(v).__name__}`"
            if t.max_length is not None and len(v) > t.max_length:
                return f"expected at most {t.max_length} bytes"
            if t.min_length is not None and len(v) < t.min_length:
                return f"expected at least {t.min_length} bytes"
            return None

        return check_bytes
    if isinstance(t, mi.BoolType):
        return lambda v: None if isinstance(v, bool) else f"expected `bool`, got `{v!r}`"
    if isinstance(t, mi.NoneType):
        return lambda v: None if v is None else "expected `null`"
    if isinstance(t, mi.CustomType):
        return lambda v: None if isinstance(v, t.cls) else f"expected `{t.cls.__name__}`"
    if isinstance(t, mi.StructType):
        return lambda v: None if isinstance(v, t.cls) else f"expected `{t.cls.__name__}`"
    if isinstance(t, mi.VarTupleType | mi.ListType):
        item = _checker(t.item_type)

        def check_seq(v: Any) -> str | None:
            if not isinstance(v, tuple | list):
                return f"expected a sequence, got `{type(v).__name__}`"
            if t.max_length is not None and len(v) > t.max_length:
                return f"expected at most {t.max_length} items"
            for i, x in enumerate(v):
                problem = item(x)
                if problem:
                    return f"item {i}: {problem}"
            return None

        return check_seq
    if isinstance(t, mi.DictType):
        key, val = _checker(t.key_type), _checker(t.value_type)

        def check_dict(v: Any) -> str | None:
            if not isinstance(v, dict):
                return f"expected a map, got `{type(v).__name__}`"
            for k, x in v.items():
                problem = key(k) or val(x)
                if problem:
                    return f"entry {k!r}: {problem}"
            return None

        return check_dict
    if isinstance(t, mi.UnionType):
        options = [_checker(u) for u in t.types]

        def check_union(v: Any) -> str | None:
            problems = [c(v) for c in options]
            return None if any(p is None for p in problems) else problems[0]

        return check_union
    if isinstance(t, mi.LiteralType):
        return lambda v: None if v in t.values else f"expected one of {t.values!r}"
    if isinstance(t, mi.AnyType):
        return lambda v: None
    raise TypeError(f"meshbench models do not support field type {t!r}")


def _bounded(is_type: Callable[[Any], bool], name: str, t: Any) -> _Check:
    def check(v: Any) -> str | None:
        if not is_type(v):
            return f"expected `{name}`, got `{type(v).__name__}`"
        return _range(v, t)

    return check


def _range(v: float, t: Any) -> str | None:
    if t.ge is not None and v < t.ge:
        return f"expected a value >= {t.ge}, got {v}"
    if t.le is not None and v > t.le:
        return f"expected a value <= {t.le}, got {v}"
    if getattr(t, "gt", None) is not None and v <= t.gt:
        return f"expected a value > {t.gt}, got {v}"
    if getattr(t, "lt", None) is not None and v >= t.lt:
        return f"expected a value < {t.lt}, got {v}"
    return None
