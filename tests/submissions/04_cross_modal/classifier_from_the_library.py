"""The zero-shot classifier handed over to the library's own (the reference that the lab asks students to write),
imported under another name.

Its values are right, so the public test passes in the notebook, but the grader's tripwire on the reference
(on its code, so the alias does not hide it) trips: q2 scores zero, with a note. The loss is the master's.
"""

ANSWERS = {
    "q2": '''
from sslcourse.methods.clip import zero_shot_classifier as library_classifier


def zero_shot_classifier(method, class_names, templates=TEMPLATES):
    return library_classifier(method, class_names, templates)
''',
}
EXPECTED = {"q1": 3, "q2": 0, "q3": 0}
NOTE = "q2: calls the reference"
