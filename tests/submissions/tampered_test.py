"""Tampered tests: q5 is wrong, and the notebook hides it.

It replaces the q5 check cell by a fake success message, redefines ``grader.check`` to
always pass, and rewrites the public tests stored in the notebook's metadata so that
they pass too. The grader runs its own copy of the tests: q5 still scores 0.
"""

ANSWERS = {
    "q5": '''
tau_half = 1.0
print(f"tau_half = {tau_half:.4f}")
''',
}


def tamper(nb):
    import nbformat
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.strip() == 'grader.check("q5")':
            cell.source = 'print("q5 results: All test cases passed!")'
    init = next(i for i, c in enumerate(nb.cells) if "otter.Notebook(" in c.source)
    nb.cells.insert(init + 1, nbformat.v4.new_code_cell(
        'grader.check = lambda question, global_env=None: print(f"{question} results: All test cases passed!")'))
    nb.metadata["otter"]["tests"]["q5"] = (
        "from otter.test_files import test_case\nOK_FORMAT = False\nname = 'q5'\npoints = 2\n"
        "@test_case(points=2, hidden=False)\ndef test_q5(tau_half):\n    assert True\n")


EXPECTED = {"q1": 2, "q2": 3, "q3": 3, "q4": 3, "q5": 0, "q6": 0}
NOTE = ""
