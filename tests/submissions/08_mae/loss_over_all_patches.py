"""MAE's loss averaged over every patch, visible ones included (the mask is ignored).

The public example (squared errors 1, 4, 9 of which patches 0 and 2 are masked) gives 14 / 3 instead
of 5, the comparisons with the library differ, and with no patch masked the loss is not 0: q4 scores
nothing.
"""

ANSWERS = {
    "q4": '''
def mae_loss(predictions, patches, mask, norm_pix_loss=True):
    if predictions.shape != patches.shape:
        raise ValueError("predictions and patches differ in shape")
    target = patches
    if norm_pix_loss:
        target = (patches - patches.mean(dim=-1, keepdim=True)) / (patches.var(dim=-1, keepdim=True) + 1e-6).sqrt()
    return ((predictions - target) ** 2).mean()
''',
}
EXPECTED = {"q1": 3, "q2": 2, "q3": 3, "q4": 0, "q5": 0}
NOTE = ""
