"""The registry of methods: adding one is a file and a line here."""
from .autoencoder import Autoencoder, DenoisingAutoencoder
from .avc import AVC
from .barlow_twins import BarlowTwins
from .base import Method
from .byol import BYOL
from .clip import CLIP
from .cmc import CMC
from .colorization import Colorization
from .counting import Counting
from .cpc import CPC
from .deepcluster import DeepCluster
from .dim import DIM
from .exemplar import Exemplar
from .free_labels import FreeLabels
from .inpainting import Inpainting
from .instdisc import InstDisc
from .jigsaw import Jigsaw
from .mae import MAE
from .moco import MoCo, MoCoV1
from .motion_segmentation import MotionSegmentation
from .multitask import MultiTask
from .next_frame import NextFrame
from .order_verification import OrderVerification
from .relative_position import RelativePosition
from .rgb_flow import RGBFlowCorrespondence
from .rotation import Rotation
from .sequence_sorting import SequenceSorting
from .simclr import SimCLR
from .simclr_v2 import SimCLRv2
from .simclr_variants import DCL, HCL, Debiased, LargeMargin, LowDim, SupCon
from .simmim import SimMIM
from .simsiam import SimSiam
from .split_brain import SplitBrain
from .super_resolution import SuperResolution
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
    CLIP.name: CLIP,
    RGBFlowCorrespondence.name: RGBFlowCorrespondence,
    MotionSegmentation.name: MotionSegmentation,
    AVC.name: AVC,
    FreeLabels.name: FreeLabels,
    DeepCluster.name: DeepCluster,
    Rotation.name: Rotation, RelativePosition.name: RelativePosition, Jigsaw.name: Jigsaw, Counting.name: Counting,
    Exemplar.name: Exemplar, MultiTask.name: MultiTask,
    Autoencoder.name: Autoencoder, DenoisingAutoencoder.name: DenoisingAutoencoder, Inpainting.name: Inpainting,
    SuperResolution.name: SuperResolution, Colorization.name: Colorization, SplitBrain.name: SplitBrain,
    MAE.name: MAE, SimMIM.name: SimMIM,
    OrderVerification.name: OrderVerification, SequenceSorting.name: SequenceSorting, NextFrame.name: NextFrame,
    BYOL.name: BYOL, SimSiam.name: SimSiam, SwAV.name: SwAV, BarlowTwins.name: BarlowTwins, VICReg.name: VICReg,
}


def build_method(name: str, backbone, **hparams) -> Method:
    """Build a registered method around ``backbone``; ``hparams`` go to its constructor."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name](backbone, **hparams)


__all__ = ["Autoencoder", "AVC", "BarlowTwins", "build_method", "BYOL", "CLIP", "CMC", "Colorization", "Counting", "CPC", "DCL", "Debiased", "DeepCluster", "DenoisingAutoencoder", "DIM", "Exemplar", "FreeLabels", "HCL",
           "Inpainting", "InstDisc", "Jigsaw", "LargeMargin", "LowDim", "MAE", "Method", "METHODS", "MoCo", "MoCoV1", "MotionSegmentation", "MultiTask", "NextFrame", "OrderVerification", "RelativePosition", "RGBFlowCorrespondence", "Rotation", "SimCLR", "SimCLRv2", "SimMIM", "SimSiam",
           "SequenceSorting", "SplitBrain", "SuperResolution", "SupCon", "SwAV", "VICReg"]
