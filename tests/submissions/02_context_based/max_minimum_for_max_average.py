"""permutation_set that, asked for the paper's max_average, adds the candidate farthest from its
nearest member (the max-min rule) instead of the one of largest summed distance.

The other three criteria are right, and so are the errors. The two rules agree for a while (the
first public example, 4 tiles, is the same under both) but not for long: the second public
example differs at its fifth permutation and the hidden 100-permutation set at its eighth, so the
public test and the hidden comparison of max_average fail: two of the four tests of q2.
"""

ANSWERS = {
    "q2": '''
def permutation_set(n_permutations, generator, criterion="max_average", n_tiles=9, pool_size=20000):
    if criterion not in ("max_average", "max_minimum", "min_average", "random"):
        raise ValueError(f"unknown criterion {criterion!r}")
    if pool_size is None:
        candidates = torch.tensor(list(itertools.permutations(range(n_tiles))))
    else:
        candidates = torch.unique(torch.rand(pool_size, n_tiles, generator=generator).argsort(dim=1), dim=0)
    if n_permutations > len(candidates):
        raise ValueError(f"only {len(candidates)} candidates")
    if criterion == "random":
        return candidates[torch.randperm(len(candidates), generator=generator)[:n_permutations]].long()
    chosen = [int(torch.randint(len(candidates), (1,), generator=generator))]
    total = torch.zeros(len(candidates))
    closest = torch.full((len(candidates),), float(n_tiles))
    while len(chosen) < n_permutations:
        distance = (candidates != candidates[chosen[-1]]).sum(dim=1).float()
        total += distance
        closest = torch.minimum(closest, distance)
        if criterion == "min_average":
            chosen.append(int(total.masked_fill(closest == 0, math.inf).argmin()))
        else:   # the nearest member's distance, for max_minimum and (wrongly) for max_average
            chosen.append(int(closest.masked_fill(closest == 0, -1.0).argmax()))
    return candidates[chosen].long()
''',
}
EXPECTED = {"q1": 3, "q2": 2, "q3": 3, "q4": 0}
NOTE = ""
