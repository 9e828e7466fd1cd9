"""Heads that sit on a backbone: projection (SimCLR, MoCo v2, ...) and prediction (BYOL, SimSiam)."""
from torch import nn


class MLPHead(nn.Sequential):
    """Linear -> BN -> ReLU, repeated, then a last Linear: in_dim -> ... -> out_dim.

    ``num_layers`` counts the linear layers. ``last_bn`` adds a BN on the output, as in
    SimSiam's projector and SimCLR v2's deeper head.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
                 last_bn: bool = False):
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        layers = []
        for d_in, d_out in zip(dims[:-2], dims[1:-1]):
            layers += [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-2], dims[-1], bias=not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        super().__init__(*layers)
        self.out_dim = out_dim


def ProjectionHead(in_dim: int, hidden_dim: int = 512, out_dim: int = 128, num_layers: int = 2) -> MLPHead:
    """SimCLR's g(.): a 2-layer MLP onto the space where the loss is applied (Chen et al. 2020)."""
    return MLPHead(in_dim, hidden_dim, out_dim, num_layers)


def PredictionHead(in_dim: int = 128, hidden_dim: int = 512, out_dim: int = 128) -> MLPHead:
    """BYOL's and SimSiam's predictor q(.): a 2-layer MLP from one view's projection to the other's."""
    return MLPHead(in_dim, hidden_dim, out_dim, num_layers=2)
