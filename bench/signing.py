"""`python -m bench.signing`: what signing costs per event, beside what the codec already costs.

Each round, for the same events of every type (a typical checks.passed is ~2 kB): encode (what
every emit did before), encode + sign; decode (what every consumer did before), verify + decode.
Rounds alternate, in one process, so the figures are ratios of the same machine's moment:
emit ratio = (encode + sign) / encode, consume ratio = (verify + decode) / decode.
"""

from __future__ import annotations

import argparse
import statistics
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import codec, signing
from tests.unit import factories as f


def _events() -> list:
    submitted = f.submitted()
    return [submitted, f.checks_passed(submitted), f.review_requested(submitted), f.decided(submitted),
            f.deployment_succeeded(submitted)]


def _per_event(fn, items, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return (time.perf_counter() - start) / (repeat * len(items)) * 1e6  # microseconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    events = _events()
    roles = {e.type: sorted(signing.TRUST[e.type])[0] for e in events}  # who signs each type
    private = {role: Ed25519PrivateKey.generate() for role in set(roles.values())}
    signers = {role: signing.Signer(key) for role, key in private.items()}
    trust = signing.TrustFile(keys=[signing.new_entry(key, f"bench-{role}", role) for role, key in private.items()])
    keyring = signing.Keyring([signing.TrustedKey(e.kid, signing.Principal(e.principal, e.role), e.public(),
                                                  e.not_after) for e in trust.keys])
    records = [codec.encode(e, "/bench") for e in events]
    signed = [signers[roles[e.type]].sign(r) for e, r in zip(events, records, strict=True)]

    def encode_and_sign(e) -> None:
        signers[roles[e.type]].sign(codec.encode(e, "/bench"))

    def verify_and_decode(r: codec.Record) -> None:
        keyring.verify(r.topic, r.key, list(r.headers.items()), r.value)
        codec.decode(r.topic, r.value)

    figures: dict[str, list[float]] = {"encode": [], "encode+sign": [], "decode": [], "verify+decode": []}
    for _ in range(args.rounds):
        figures["encode"].append(_per_event(lambda e: codec.encode(e, "/bench"), events, args.repeat))
        figures["encode+sign"].append(_per_event(encode_and_sign, events, args.repeat))
        figures["decode"].append(_per_event(lambda r: codec.decode(r.topic, r.value), records, args.repeat))
        figures["verify+decode"].append(_per_event(verify_and_decode, signed, args.repeat))
    median = {k: statistics.median(v) for k, v in figures.items()}
    size = statistics.mean(len(r.value) for r in records)
    print(f"events: {', '.join(sorted({e.type for e in events}))} (mean body {size:.0f} bytes)")
    for name, value in median.items():
        print(f"  {name:<14} {value:8.1f} us/event (median of {args.rounds} rounds)")
    print(f"emit ratio (encode+sign / encode):      {median['encode+sign'] / median['encode']:.2f}")
    print(f"consume ratio (verify+decode / decode): {median['verify+decode'] / median['decode']:.2f}")


if __name__ == "__main__":
    main()
