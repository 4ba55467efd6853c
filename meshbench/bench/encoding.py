"""``meshbench bench encoding``: microseconds per encode, sign, verify and decode."""

from __future__ import annotations

import time
from typing import Any

from meshbench.core.model import decode_object
from meshbench.testing.factories import make_identity, make_task


def run(quick: bool = False) -> dict[str, Any]:
    n = 300 if quick else 3000
    publisher = make_identity(1)
    tasks = [make_task(publisher, nonce=i) for i in range(n)]
    signed = []
    t0 = time.perf_counter()
    for t in tasks:
        t.__dict__.pop("_encoded", None)
        t.encode()
    t1 = time.perf_counter()
    for t in tasks:
        signed.append(t.sign(publisher))
    t2 = time.perf_counter()
    blobs = [s.encode() for s in signed]
    t3 = time.perf_counter()
    for s in signed:
        s.verify()
    t4 = time.perf_counter()
    for b in blobs:
        decode_object(b, verify_signature=False)
    t5 = time.perf_counter()
    for b, s in zip(blobs, signed, strict=True):
        decode_object(b, expected_cid=s.cid)
    t6 = time.perf_counter()
    us = 1e6 / n
    return {
        "objects": n,
        "bytes_per_task": round(sum(map(len, blobs)) / n, 1),
        "encode_us": round((t1 - t0) * us, 1),
        "sign_us": round((t2 - t1) * us, 1),
        "verify_us": round((t4 - t3) * us, 1),
        "decode_us": round((t5 - t4) * us, 1),
        "decode_check_cid_verify_us": round((t6 - t5) * us, 1),
    }
