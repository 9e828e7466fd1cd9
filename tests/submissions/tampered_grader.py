"""Reaches into the grader: patches otter's checking code to pass everything.

The static integrity audit refuses it before it runs: zero, with a note for an instructor.
"""

ANSWERS = {"q1": '''
import otter
from otter.test_files import exception_test

exception_test.ExceptionTestFile.run = lambda self, env: None
otter.Notebook.check = lambda self, question, global_env=None: None


def cosine_similarity_matrix(a, b):
    return a @ b.T
'''}
EXPECTED = {"q1": 0, "q2": 0, "q3": 0, "q4": 0, "q5": 0, "q6": 0}
NOTE = "integrity check failed"
