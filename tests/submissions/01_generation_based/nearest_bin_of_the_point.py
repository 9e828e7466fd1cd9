"""quantize_ab that sends each pixel to the in-gamut bin nearest to its own (a, b), not to its cell's centre.

For every colour inside the gamut the two agree (a pixel's own cell is then in gamut and its centre is
the nearest one), so the bin centres, the colours near them and grey are right. Outside the gamut they
differ: the public example (65, 95), whose cell is centred at (60, 100), goes to (60, 70) instead of
(40, 80), and the comparison with the library on random colours differs too. The hidden test of the
edge cells and bad input fails as well: (300, 0) is nearest to the bin (100, -50), while its cell,
clamped to (120, 0), is nearest to (90, 0). q2 scores nothing.
"""

ANSWERS = {
    "q2": '''
def quantize_ab(ab):
    if not isinstance(ab, torch.Tensor) or not ab.is_floating_point():
        raise TypeError("ab must be a floating-point tensor")
    if ab.ndim != 4 or ab.shape[1] != 2:
        raise ValueError(f"ab must have shape (N, 2, H, W), got {tuple(ab.shape)}")
    n, _, height, width = ab.shape
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2).double()
    nearest = torch.cdist(points, ab_bins().to(ab.device)).argmin(dim=1)
    return nearest.reshape(n, height, width)
''',
}
EXPECTED = {"q1": 3, "q2": 0, "q3": 2, "q4": 3, "q5": 0}
NOTE = ""
