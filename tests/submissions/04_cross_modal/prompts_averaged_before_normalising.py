"""Prompt ensembling on the raw text embeddings: the mean of the K embeddings, normalised once.

With one template (the public test) it is the right answer, and the checks of the mode and of bad
templates pass; with several templates a longer embedding weighs more in the mean, and the comparison
with the library differs: one test of three fails.
"""

ANSWERS = {
    "q2": '''
def zero_shot_classifier(method, class_names, templates=TEMPLATES):
    if isinstance(templates, str) or not templates or any(t.count("{}") != 1 for t in templates):
        raise ValueError(f"bad templates {templates!r}")
    with torch.no_grad(), eval_mode(method):
        rows = [method.encode_text(method.tokenize([t.format(name) for t in templates])).mean(dim=0)
                for name in class_names]
    return F.normalize(torch.stack(rows), dim=1).cpu()
''',
}
EXPECTED = {"q1": 3, "q2": 2, "q3": 0}
NOTE = ""
