"""rotate_batch turning the images clockwise (torch.rot90 with k = -y): labels 1 and 3 swapped.

Rows 1 and 3 of every image hold the wrong quarter turn, so the public example fails at row 1 (its
message says "that is clockwise") and so do both comparisons with the reference; the check that
8 x 6 images raise still passes, one of the four tests of q1. The run of q4 is trained here: the
task with two labels swapped is the same task, so the network learns it as well and q4 keeps its
points. The labels' convention matters to the grader, not to the features.
"""

ANSWERS = {
    "q1": '''
def rotate_batch(images, generator, all_rotations=True):
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotate_batch needs square images, got shape {tuple(images.shape)}")
    if all_rotations:
        turns = torch.stack([torch.rot90(images, -quarter, dims=(2, 3)) for quarter in range(4)], dim=1)
        labels = torch.arange(4, device=images.device).repeat(images.shape[0])
        return turns.reshape(4 * images.shape[0], *images.shape[1:]), labels
    labels = torch.randint(4, (images.shape[0],), generator=generator)
    turned = [torch.rot90(image, -int(quarter), dims=(1, 2)) for image, quarter in zip(images, labels)]
    return torch.stack(turned), labels.to(images.device)
''',
}
EMPTY = ()
EXPECTED = {"q1": 0.75, "q2": 4, "q3": 3, "q4": 3}
NOTE = ""
