"""Self-supervised objectives, one function each, named after their paper."""
from .info_nce import info_nce, info_nce_logits
from .nt_xent import nt_xent
from .similarity import cosine_similarity_matrix

__all__ = ["cosine_similarity_matrix", "info_nce", "info_nce_logits", "nt_xent"]
