"""jigsaw_tiles numbering the cells column by column (tile j in cell row j % 3, column j // 3).

The generator is drawn from as asked and the labels are right, but tile j is cut from the
transposed cell: the tiles do not come back in reading order under p.argsort(). The public test
and the comparison with the reference fail; the too-large tile still raises: one of the three
tests of q3.
"""

ANSWERS = {
    "q3": '''
def jigsaw_tiles(images, permutations, generator, tile_size):
    n, height, width = len(images), images.shape[2], images.shape[3]
    cell = min(height, width) // 3
    if tile_size > cell:
        raise ValueError(f"tiles of {tile_size} px do not fit in cells of {cell} px")
    top = torch.randint(height - 3 * cell + 1, (n,), generator=generator)
    left = torch.randint(width - 3 * cell + 1, (n,), generator=generator)
    offsets = torch.randint(cell - tile_size + 1, (n, 9, 2), generator=generator)
    tiles = []
    for k in range(n):
        row_of_image = []
        for j in range(9):
            r = int(top[k]) + (j % 3) * cell + int(offsets[k, j, 0])
            c = int(left[k]) + (j // 3) * cell + int(offsets[k, j, 1])
            row_of_image.append(images[k, :, r:r + tile_size, c:c + tile_size])
        tiles.append(torch.stack(row_of_image))
    tiles = torch.stack(tiles)
    labels = torch.randint(len(permutations), (n,), generator=generator)
    return tiles[torch.arange(n)[:, None], permutations[labels]], labels
''',
}
EXPECTED = {"q1": 3, "q2": 4, "q3": 1, "q4": 0}
NOTE = ""
