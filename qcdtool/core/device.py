"""Choice of the torch device for training and sampling."""

from __future__ import annotations

from qcdtool.core.errors import QcdtoolError


def resolve_device(requested: str) -> str:
    """Turn the spec's device (auto, cpu, cuda, mps) into one that exists here.

    ``auto`` picks cuda, then mps, then cpu. Asking for a device this machine
    lacks is an error rather than a silent fall-back to the CPU.
    """
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise QcdtoolError("[run] device = 'cuda', but torch finds no CUDA device here; use 'auto' or 'cpu'")
    if requested == "mps" and not mps:
        raise QcdtoolError("[run] device = 'mps', but torch finds no MPS device here; use 'auto' or 'cpu'")
    return requested
