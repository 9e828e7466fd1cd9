"""Random masking with one shuffle for the whole batch: every image hides the same patches.

The count per image is right and keep, mask and restore agree with one another, but the public test
sees that all 64 masks are equal, and the values differ from the library's (and fewer numbers are
drawn from the generator). The checks of the device and of bad ratios pass: one test of three.
"""

ANSWERS = {
    "q3": '''
def random_masking(batch_size, length, mask_ratio, generator, device=None):
    if not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    visible = round(length * (1 - mask_ratio))
    if visible < 1:
        raise ValueError("no patch left visible")
    order = torch.rand(length, generator=generator).argsort().expand(batch_size, -1)
    rank = order.argsort(dim=1)
    return order[:, :visible].to(device), (rank >= visible).to(device), rank.to(device)
''',
}
EXPECTED = {"q1": 3, "q2": 2, "q3": 1, "q4": 3, "q5": 0}
NOTE = ""
