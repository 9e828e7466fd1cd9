"""Not a notebook: a file named like a notebook that is not one (here, plain text)."""

RAW = b"Dear instructor, my notebook would not save, so here are my answers: ...\n"
EXPECTED = {"q1": 0, "q2": 0, "q3": 0, "q4": 0, "q5": 0, "q6": 0}
NOTE = "not a Jupyter notebook"
