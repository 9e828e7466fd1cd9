"""Calls the reference: the vectorised NT-Xent just calls the library's nt_xent (renamed)."""

ANSWERS = {
    "q3": '''
from sslcourse.losses import nt_xent as my_fast_loss


def nt_xent_vectorised(z1, z2, temperature=0.5):
    return my_fast_loss(z1, z2, temperature)
''',
}
EXPECTED = {"q1": 2, "q2": 3, "q3": 0, "q4": 3, "q5": 2, "q6": 0}
NOTE = "q3: calls the reference"
