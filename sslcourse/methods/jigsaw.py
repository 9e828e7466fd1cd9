"""Jigsaw puzzles: which permutation of a chosen set shuffled the 9 tiles of the image?

Noroozi, Favaro. "Unsupervised Learning of Visual Representations by Solving Jigsaw
Puzzles." ECCV 2016.

    tiles: a 3x3 grid of cells (paper: 75 px cells of a 225 px crop), a tile at a random
           place inside each cell (paper: 64 px), so that neighbours never share an edge
    shuffled[i] = tile[p[i]]         p = P[y], y uniform over a fixed set P of permutations
    y_hat = MLP([f(shuffled[0]), ..., f(shuffled[8])])        the context-free network (CFN):
           one backbone f sees each tile alone, only the classifier sees them together
    loss = cross-entropy(y_hat, y)

The permutation set (the paper's Algorithm 1). Start from a random permutation; repeatedly
add the candidate whose Hamming distance to the chosen set is largest, summed over the set
(D-bar = 1^T D: the average distance). The more the permutations differ, the more the network
must look at every tile. The paper's Table 1, 1000 permutations each: average Hamming
distance 8.00 -> jigsaw accuracy 71%, detection 53.2 mAP; 6.35 -> 62%, 51.3; 3.99 -> 54%,
50.2. ``permutation_set`` also gives the greedy max-min set (the smallest distance to the
set largest, which raises the minimum distance), sets of low average distance (the closest
candidate first) and random sets, to reproduce that trend.

Candidates: the paper scores all 9! = 362,880 permutations; ``pool_size=None`` does too
(listed with itertools), but each added permutation then costs a pass over all of them:
measured with one thread on the course's shared 2-core CPU under a load of 14, 1.6 s to list
them, then 5-7 s for 100 permutations and 45 s for 1000. The default is a pool of 20,000 random
permutations drawn from the generator: 0.4 s for 100 and 2-2.5 s for 1000 there, with the same
average distance for the paper's criterion (8.08 for 100, 8.01 for 1000; the paper's Table 1
has 8.00 for 1000). Low average distances, from ``min_average`` (seed 0): 100 permutations
4.00 from all candidates, 5.68 from 20,000; 1000 permutations 5.46 from all, 6.93 from 20,000.
Random sets average 8.0 (two random permutations of 9 share one position on average) but have
a minimum distance of 2 or 3; ``max_minimum`` reaches 6 for 100 and 5 for 1000.

Defaults for small images and short runs: 100 permutations (paper: 1000; fewer permutations
make an easier task); on 32 px images 10 px cells and 8 px tiles (the paper's 64/75 of a cell),
resized to ``input_size`` (16 px, the smallest input of the course's ConvNet); each tile
standardised on its own, as the paper does against low-level shortcuts (here its mean and
standard deviation over all its channels and pixels).
"""
import functools
import itertools
import math

import torch
import torch.nn.functional as F

from ..models import MLPHead
from ..transforms import LOCAL_CROP_MIN_SIZE, check_generator, check_images, resize, to_float
from ..utils import check_dim, check_tensor
from .pretext import PretextTask
from .relative_position import crop_patches

GRID = 3
N_TILES = GRID * GRID
CRITERIA = ("max_average", "max_minimum", "min_average", "random")
FULL_POOL_LIMIT = math.factorial(9)   # beyond 9 tiles, listing every permutation is too slow


def hamming_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(P, T) and (Q, T) permutations -> (P, Q) Hamming distances: positions where they differ."""
    return (a[:, None, :] != b[None, :, :]).sum(dim=-1)


def hamming_stats(permutations: torch.Tensor) -> tuple[float, int]:
    """(average, minimum) Hamming distance over all pairs of a (P, T) set, P >= 2."""
    check_tensor(permutations, "permutations", ndim=2)
    if len(permutations) < 2:
        raise ValueError(f"hamming_stats needs at least 2 permutations, got {len(permutations)}")
    distances = hamming_matrix(permutations, permutations)
    pairs = distances[torch.triu_indices(len(permutations), len(permutations), offset=1).unbind()]
    return pairs.double().mean().item(), int(pairs.min())


@functools.lru_cache(maxsize=2)
def _all_permutations(n_tiles: int) -> torch.Tensor:
    return torch.tensor(list(itertools.permutations(range(n_tiles))), dtype=torch.int8)


def permutation_set(n_permutations: int, generator: torch.Generator, criterion: str = "max_average",
                    n_tiles: int = N_TILES, pool_size: int | None = 20000) -> torch.Tensor:
    """A (n_permutations, n_tiles) int64 set of distinct permutations, chosen greedily.

    Candidates: ``pool_size`` random permutations from ``generator`` (duplicates dropped), or all
    n_tiles! of them (``pool_size=None``, up to 9 tiles; slow, see the module's docstring).
    The first permutation is a random candidate; then each step adds the one ``criterion`` prefers:
    ``max_average`` the largest summed distance to the set (the paper's Algorithm 1),
    ``max_minimum`` the largest distance to its nearest member, ``min_average`` the smallest
    summed distance (a set of low average distance). ``random``: distinct random candidates.
    Ties go to the first candidate in the pool's order.
    """
    check_generator(generator)
    check_dim(n_tiles, "n_tiles")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    if pool_size is None:
        if math.factorial(n_tiles) > FULL_POOL_LIMIT:
            raise ValueError(f"{n_tiles}! permutations are too many to list; pass pool_size (e.g. 20000)")
        pool = _all_permutations(n_tiles)
    else:
        check_dim(pool_size, "pool_size")
        draws = torch.rand(pool_size, n_tiles, generator=generator).argsort(dim=1)
        pool = torch.unique(draws, dim=0).to(torch.int8)
    check_dim(n_permutations, "n_permutations")
    if n_permutations > len(pool):
        raise ValueError(f"n_permutations must be at most the {len(pool)} distinct candidates, got {n_permutations}")
    if criterion == "random":
        return pool[torch.randperm(len(pool), generator=generator)[:n_permutations]].long()
    chosen = [int(torch.randint(len(pool), (1,), generator=generator))]
    # Hamming distance = n_tiles - matching positions, and the matches with one permutation are one
    # matrix-vector product of one-hot codes: much faster on a busy CPU than comparing element-wise.
    one_hot = F.one_hot(pool.long(), n_tiles).flatten(1).float()               # (pool, n_tiles^2)
    summed = torch.zeros(len(pool))                                        # distance to the set, summed over it
    nearest = torch.full((len(pool),), float(n_tiles + 1))                 # distance to its nearest member
    for _ in range(n_permutations - 1):
        distance = n_tiles - one_hot @ one_hot[chosen[-1]]
        summed += distance
        torch.minimum(nearest, distance, out=nearest)
        taken = nearest == 0                                               # already in the set
        if criterion == "max_average":
            chosen.append(int(summed.masked_fill(taken, -1).argmax()))
        elif criterion == "max_minimum":
            chosen.append(int(nearest.masked_fill(taken, -1).argmax()))
        else:
            chosen.append(int(summed.masked_fill(taken, math.inf).argmin()))
    return pool[chosen].long()


@functools.lru_cache(maxsize=8)
def _seeded_permutation_set(n_permutations, seed, criterion, pool_size) -> torch.Tensor:
    return permutation_set(n_permutations, torch.Generator().manual_seed(seed), criterion, pool_size=pool_size)


def check_permutations(permutations, n_tiles: int = N_TILES) -> torch.Tensor:
    """Raise unless ``permutations`` is a (P, n_tiles) integer tensor whose rows are permutations."""
    check_tensor(permutations, "permutations", ndim=2)
    if permutations.is_floating_point() or permutations.shape[1] != n_tiles:
        raise ValueError(f"permutations must be an integer tensor of shape (P, {n_tiles}), "
                         f"got {permutations.dtype} {tuple(permutations.shape)}")
    if not torch.equal(permutations.sort(dim=1).values.cpu(), torch.arange(n_tiles).expand(len(permutations), -1)):
        raise ValueError(f"every row of permutations must hold each of 0..{n_tiles - 1} once")
    return permutations


def default_tile_size(image_size: int) -> int:
    """The paper's 64 px tile in a 75 px cell, scaled to cells of image_size // 3 px (32 px images: 8)."""
    return max(1, (image_size // GRID) * 64 // 75)


def jigsaw_tiles(images: torch.Tensor, permutations: torch.Tensor, generator: torch.Generator, tile_size: int):
    """(N, C, H, W) images -> (tiles, labels): (N, 9, C, t, t) shuffled tiles and (N,) indices into
    ``permutations`` (P, 9).

    A square of 3 cells of side ``min(H, W) // 3`` sits at a random place in the image; tile
    j = 3 row + column is a t x t crop at a random place inside cell j; then position i of the
    puzzle holds tile ``p[i]`` with p = permutations[label]. So ``tiles[:, p.argsort()]`` puts the
    tiles back in reading order. Any dtype; outputs on the images' device.
    """
    check_images(images)
    check_generator(generator)
    check_permutations(permutations)
    n, _, height, width = images.shape
    cell = min(height, width) // GRID
    check_dim(tile_size, "tile_size")
    if tile_size > cell:
        raise ValueError(f"tile_size must fit in a cell of a 3x3 grid on {height}x{width} images "
                         f"({cell} px), got {tile_size}; jigsaw needs images of at least 3 * tile_size px")
    extent = GRID * cell
    origin = torch.stack([torch.randint(side - extent + 1, (n,), generator=generator)
                          for side in (height, width)], dim=1)                               # (N, 2)
    inside = torch.randint(cell - tile_size + 1, (n, N_TILES, 2), generator=generator)      # (N, 9, 2)
    cells = torch.stack(torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij"), dim=-1)
    corners = origin[:, None] + cell * cells.view(1, N_TILES, 2) + inside                  # (N, 9, 2)
    tiles = crop_patches(images, corners[..., 0], corners[..., 1], tile_size)              # (N, 9, C, t, t)
    labels = torch.randint(len(permutations), (n,), generator=generator)
    order = permutations.cpu()[labels].to(images.device)                                   # (N, 9)
    shuffled = tiles[torch.arange(n, device=images.device)[:, None], order]
    return shuffled, labels.to(images.device)


class Jigsaw(PretextTask):
    name = "jigsaw"
    paper = ("Noroozi, Favaro. Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles. "
             "ECCV 2016.")
    summary = "predict which of a set of permutations shuffled the 9 tiles; one backbone per tile (CFN)"
    defaults = {**PretextTask.defaults, "lr": 3e-3, "batch_size": 64}

    def __init__(self, backbone, image_size: int = 32, n_permutations: int = 100, criterion: str = "max_average",
                 pool_size: int | None = 20000, permutation_seed: int = 0, tile_size: int | None = None,
                 input_size: int = LOCAL_CROP_MIN_SIZE, normalize_tiles: bool = True, head_hidden_dim: int = 512):
        """The permutation set is ``permutation_set(n_permutations, Generator().manual_seed(permutation_seed),
        criterion, pool_size=pool_size)``, kept as a buffer. ``tile_size`` None: :func:`default_tile_size`.
        The classifier, as the paper's fc7-fc8 on the 9 concatenated tile features: Linear-BN-ReLU-Linear.
        """
        super().__init__(backbone)
        if isinstance(permutation_seed, bool) or not isinstance(permutation_seed, int) or permutation_seed < 0:
            raise ValueError(f"permutation_seed must be an int >= 0, got {permutation_seed!r}")
        if not isinstance(normalize_tiles, bool):
            raise TypeError(f"normalize_tiles must be True or False, got {normalize_tiles!r}")
        self.image_size = image_size
        self.tile_size = default_tile_size(image_size) if tile_size is None else check_dim(tile_size, "tile_size")
        if self.tile_size > image_size // GRID:
            raise ValueError(f"tile_size must fit in a cell of a 3x3 grid on {image_size} px images "
                             f"({image_size // GRID} px), got {self.tile_size}")
        self.criterion, self.pool_size, self.permutation_seed = criterion, pool_size, permutation_seed
        self.input_size = check_dim(input_size, "input_size")
        self.normalize_tiles = normalize_tiles
        self.head_hidden_dim = check_dim(head_hidden_dim, "head_hidden_dim")
        self.register_buffer("permutations",
                             _seeded_permutation_set(n_permutations, permutation_seed, criterion, pool_size).clone())
        self.head = MLPHead(N_TILES * backbone.out_dim, head_hidden_dim, n_permutations)

    def make_pseudo_labels(self, images, generator):
        """-> inputs (9N, C, input_size, input_size): image i's shuffled tiles at rows 9i..9i+8; labels (N,)."""
        tiles, labels = jigsaw_tiles(to_float(images), self.permutations, generator, self.tile_size)
        tiles = tiles.flatten(0, 1)                                                # (9N, C, t, t)
        if self.normalize_tiles:
            mean = tiles.mean(dim=(1, 2, 3), keepdim=True)
            std = tiles.std(dim=(1, 2, 3), keepdim=True)
            tiles = (tiles - mean) / (std + 1e-5)                                  # flat tiles stay flat
        return resize(tiles, self.input_size), labels

    def predict(self, inputs):
        features = self.backbone(inputs)                                           # (9N, D)
        return self.head(features.view(-1, N_TILES * features.shape[1]))           # (N, P)

    def hparams(self):
        return {"image_size": self.image_size, "n_permutations": len(self.permutations),
                "criterion": self.criterion, "pool_size": self.pool_size, "permutation_seed": self.permutation_seed,
                "tile_size": self.tile_size, "input_size": self.input_size, "normalize_tiles": self.normalize_tiles,
                "head_hidden_dim": self.head_hidden_dim}
