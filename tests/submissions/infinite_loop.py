"""An infinite loop in a function the tests call.

The grader stops each test case at its time limit, gives q3 zero and grades the rest.
(A loop at the top level of a cell is stopped by the per-cell limit instead; see
test_labcheck_time_limits in tests/test_labs.py.)
"""

ANSWERS = {
    "q3": '''
def nt_xent_vectorised(z1, z2, temperature=0.5):
    while True:          # "I'll finish this later"
        pass
''',
}


EXPECTED = {"q1": 2, "q2": 3, "q3": 0, "q4": 3, "q5": 2, "q6": 0}
NOTE = "q3: time limit"
