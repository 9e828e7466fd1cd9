"""Patches flattened channels first: each patch vector is (channel, pixel row, pixel column), not channels last.

unpatchify uses the same order, so the round trip of q2 still gives the images back and its public
test passes; every comparison with the library fails on images of more than one channel. The public
example of q1 (two channels) already fails; the check of sizes not divisible by the patch passes.
"""

ANSWERS = {
    "q1": '''
def patchify(images, patch):
    n, channels, height, width = images.shape
    if height % patch or width % patch:
        raise ValueError(f"patch {patch} does not divide {height}x{width}")
    rows, columns = height // patch, width // patch
    grid = images.reshape(n, channels, rows, patch, columns, patch)
    return grid.permute(0, 2, 4, 1, 3, 5).reshape(n, rows * columns, channels * patch * patch)
''',
    "q2": '''
def unpatchify(patches, patch, image_size):
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    n, length, dim = patches.shape
    rows, columns, channels = height // patch, width // patch, dim // (patch * patch)
    if height % patch or width % patch or dim % (patch * patch) or length != rows * columns:
        raise ValueError(f"{tuple(patches.shape)} does not tile {height}x{width}")
    grid = patches.reshape(n, rows, columns, channels, patch, patch)
    return grid.permute(0, 3, 1, 4, 2, 5).reshape(n, channels, height, width)
''',
}
EXPECTED = {"q1": 1, "q2": 1, "q3": 3, "q4": 3, "q5": 0}
NOTE = ""
