"""Derive independent, reproducible seeds from the run seed."""

from __future__ import annotations

import hashlib

#: PYTHIA accepts ``Random:seed`` values in 1..900000000.
PYTHIA_SEED_MAX = 900_000_000


def derive_seed(run_seed: int, *key: int | str, maximum: int = PYTHIA_SEED_MAX) -> int:
    """Return a seed in 1..``maximum`` determined by the run seed and a key.

    The key names what the seed is for (``"parton", 12``), so seeds of
    different purposes never collide by construction and the same purpose
    always gets the same seed, whichever process asks. BLAKE2b spreads
    neighbouring keys over the whole range.
    """
    text = ":".join(str(part) for part in (run_seed, *key))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "little") % maximum
