"""MAE's loss assembled from the library's helpers, masking.masked_mean and methods.mae.normalise_patches.

The manifest does not list the helpers (the library's MAE, SimMIM and language models use them); the
hidden tests of q4 guard them, so the answer scores zero for q4 with a note, whatever its values.
"""

ANSWERS = {
    "q4": '''
from sslcourse.masking import masked_mean
from sslcourse.methods.mae import normalise_patches


def mae_loss(predictions, patches, mask, norm_pix_loss=True):
    if predictions.shape != patches.shape:
        raise ValueError("predictions and patches differ in shape")
    targets = normalise_patches(patches) if norm_pix_loss else patches
    return masked_mean(((predictions - targets) ** 2).mean(-1), mask)
''',
}
EXPECTED = {"q1": 3, "q2": 2, "q3": 3, "q4": 0, "q5": 0}
NOTE = "q4: calls the reference"
