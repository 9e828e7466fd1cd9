"""The registry of methods: adding one is a file and a line here."""
from .base import Method
from .simclr import SimCLR

METHODS: dict[str, type[Method]] = {
    SimCLR.name: SimCLR,
}


def build_method(name: str, backbone, **hparams) -> Method:
    """Build a registered method around ``backbone``; ``hparams`` go to its constructor."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name](backbone, **hparams)


__all__ = ["METHODS", "Method", "SimCLR", "build_method"]
