"""The registry of methods: adding one is a file and a line here."""
from .barlow_twins import BarlowTwins
from .base import Method
from .byol import BYOL
from .cmc import CMC
from .cpc import CPC
from .dim import DIM
from .instdisc import InstDisc
from .moco import MoCo, MoCoV1
from .simclr import SimCLR
from .simclr_v2 import SimCLRv2
from .simclr_variants import DCL, HCL, Debiased, LargeMargin, LowDim, SupCon
from .simsiam import SimSiam
from .swav import SwAV
from .vicreg import VICReg

METHODS: dict[str, type[Method]] = {
    SimCLR.name: SimCLR,
    SimCLRv2.name: SimCLRv2,
    MoCoV1.name: MoCoV1,
    MoCo.name: MoCo,
    DCL.name: DCL, Debiased.name: Debiased, HCL.name: HCL, SupCon.name: SupCon,
    LargeMargin.name: LargeMargin, LowDim.name: LowDim,
    InstDisc.name: InstDisc, CPC.name: CPC, DIM.name: DIM, CMC.name: CMC,
    BYOL.name: BYOL, SimSiam.name: SimSiam, SwAV.name: SwAV, BarlowTwins.name: BarlowTwins, VICReg.name: VICReg,
}


def build_method(name: str, backbone, **hparams) -> Method:
    """Build a registered method around ``backbone``; ``hparams`` go to its constructor."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name](backbone, **hparams)


__all__ = ["BarlowTwins", "build_method", "BYOL", "CMC", "CPC", "DCL", "Debiased", "DIM", "HCL", "InstDisc",
           "LargeMargin", "LowDim", "Method", "METHODS", "MoCo", "MoCoV1", "SimCLR", "SimCLRv2", "SimSiam",
           "SupCon", "SwAV", "VICReg"]
