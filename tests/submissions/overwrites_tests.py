"""Overwrites the grader's test file for q4 at run time with one that always passes.

Static checks cannot see a file name built at run time; the grader compares its test
files before and after the run, and gives zero with a note for an instructor.
"""

ANSWERS = {"q4": '''
import pathlib

def info_nce(query, key, queue, temperature=0.07):
    return torch.tensor(0.0)

for folder in pathlib.Path.cwd().glob("te" + "sts"):
    (folder / "q4.py").write_text(
        "from otter.test_files import test_case\\nOK_FORMAT = False\\nname = 'q4'\\npoints = 3\\n"
        "@test_case(points=3)\\ndef test_q4():\\n    pass\\n")
'''}
EXPECTED = {"q1": 0, "q2": 0, "q3": 0, "q4": 0, "q5": 0, "q6": 0}
NOTE = "modified the grader's test files"
