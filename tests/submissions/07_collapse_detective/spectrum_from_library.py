"""The effective rank on top of the library's covariance spectrum (sslcourse.analysis.singular_values).

The manifest does not list singular_values (the spectrum plot of Part 4 uses it); the hidden
test of q3 guards it, so the answer scores zero for q3 with a note, whatever its values.
"""

ANSWERS = {
    "q3": '''
from sslcourse.analysis import singular_values


def effective_rank(z):
    spectrum = singular_values(z)
    spectrum = spectrum[spectrum > max(z.shape) * torch.finfo(torch.float64).eps * z.double().pow(2).sum(1).mean()]
    if len(spectrum) == 0:
        return 0.0
    p = spectrum / spectrum.sum()
    return math.exp(-(p * p.log()).sum().item())
''',
}
EXPECTED = {"q1": 3, "q2": 2, "q3": 0, "q4": 3, "q5": 0}
NOTE = "q3: calls the reference"
