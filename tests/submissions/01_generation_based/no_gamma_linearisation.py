"""rgb_to_lab that applies the XYZ matrix to the sRGB values themselves, without undoing the gamma first.

Black, white and every grey still come out right (a grey stays on the line from black to white, so
a = b = 0, and L is 0 and 100 at the ends), but mid grey 0.5 gets L = 76.1 instead of 53.4 and every
colour is off: the public test fails at mid grey and so does the comparison with the library; the
checks of bad input pass, one of the three tests of q1. The notebook's bin table, made with this
function, is wrong too (the cell after q1 says so); the hidden tests rebuild it with the library's
function, so quantize_ab, smooth_distribution and rebalancing_weights keep all their points.
"""

ANSWERS = {
    "q1": '''
def rgb_to_lab(rgb):
    if not isinstance(rgb, torch.Tensor) or not rgb.is_floating_point():
        raise TypeError("rgb must be a floating-point tensor")
    if rgb.ndim < 3 or rgb.shape[-3] != 3:
        raise ValueError(f"rgb must have 3 channels in dimension -3, got shape {tuple(rgb.shape)}")
    srgb = rgb.clamp(0, 1)
    matrix = torch.tensor(RGB_TO_XYZ, dtype=rgb.dtype)
    xyz = torch.einsum("ij,...jhw->...ihw", matrix, srgb)
    t = xyz / matrix.sum(dim=1)[:, None, None]
    delta = 6 / 29
    f = torch.where(t > delta ** 3, t.clamp(min=delta ** 3) ** (1 / 3), t / (3 * delta ** 2) + 4 / 29)
    return torch.stack([116 * f[..., 1, :, :] - 16, 500 * (f[..., 0, :, :] - f[..., 1, :, :]),
                        200 * (f[..., 1, :, :] - f[..., 2, :, :])], dim=-3)
''',
}
EXPECTED = {"q1": 1, "q2": 3, "q3": 2, "q4": 3, "q5": 0}
NOTE = ""
