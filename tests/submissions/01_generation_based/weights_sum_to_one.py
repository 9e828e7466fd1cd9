"""rebalancing_weights normalised so that the weights sum to 1, not so that sum_q p~_q w_q = 1.

The weights have the right shape and order (rarer bins weigh more), but they are Q = 261 times too
small on average: the loss would shrink by that much. The public test fails at sum p~ w = 1, and the
comparison with the library (even with the library's smoothing in place) differs; the check of bad
values of lambd passes: one of the three tests of q4.
"""

ANSWERS = {
    "q4": '''
def rebalancing_weights(p, lambd=0.5, sigma=5.0):
    if isinstance(lambd, bool) or not isinstance(lambd, (int, float)) or not 0 < lambd <= 1:
        raise ValueError(f"lambd must be in (0, 1], got {lambd!r}")
    smoothed = smooth_distribution(p, sigma)
    inverse = 1 / ((1 - lambd) * smoothed + lambd / len(smoothed))
    return inverse / inverse.sum()
''',
}
EXPECTED = {"q1": 3, "q2": 3, "q3": 2, "q4": 1, "q5": 0}
NOTE = ""
