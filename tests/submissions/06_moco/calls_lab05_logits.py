"""Calls lab 05's reference: MoCo's logits come from the library's info_nce_logits (renamed).

Lab 06's manifest does not list that function (lab 05's does); the hidden test of q3 guards it.
"""

ANSWERS = {
    "q3": '''
from sslcourse.losses import info_nce_logits as logits_from_the_library


def moco_logits(query, key, queue, temperature=0.07):
    return logits_from_the_library(query, key, queue, temperature)
''',
}
EXPECTED = {"q1": 3, "q2": 3, "q3": 0, "q4": 0}
NOTE = "q3: calls the reference"
