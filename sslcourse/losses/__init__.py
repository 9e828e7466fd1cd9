"""Self-supervised objectives, one function each, named after their paper."""
from .avc import correspondence_loss
from .barlow_twins import barlow_twins, cross_correlation
from .byol import byol, negative_cosine
from .clip import clip_logits, clip_loss
from .cmc import cmc
from .cpc import cpc
from .dcl import dcl
from .debiased import debiased_nt_xent
from .drlim import contrastive_margin, triplet
from .free_labels import count_loss, depth_order_loss, domain_loss, mask_loss
from .hcl import hcl
from .info_nce import info_nce, info_nce_logits
from .infomax import deep_infomax
from .instdisc import instdisc_nce, nce_normalizer, nonparametric_softmax
from .large_margin import distance_polarization
from .low_rank import low_rank_penalty
from .nt_xent import nt_xent
from .pair_correspondence import pair_correspondence_loss
from .similarity import cosine_similarity_matrix
from .supcon import supcon
from .swav import sinkhorn, swav
from .vicreg import vicreg

__all__ = ["clip_logits", "correspondence_loss", "clip_loss", "cmc", "cpc", "deep_infomax", "instdisc_nce", "nce_normalizer", "nonparametric_softmax",
           "contrastive_margin", "count_loss", "depth_order_loss", "domain_loss", "mask_loss", "cosine_similarity_matrix", "dcl", "debiased_nt_xent", "distance_polarization", "hcl",
           "info_nce", "info_nce_logits", "low_rank_penalty", "nt_xent", "pair_correspondence_loss", "supcon", "triplet",
           "barlow_twins", "byol", "cross_correlation", "negative_cosine", "sinkhorn", "swav", "vicreg"]
