"""The logit scale turned into a Python number: the values are right, but CLIP's learned temperature gets no gradient.

The public examples pass floats and check values only, and the edge cases pass floats too; the comparison
with the library passes a learnable scalar tensor and finds no gradient for it: one test of three fails.
"""

ANSWERS = {
    "q1": '''
def clip_loss(image, text, logit_scale=INITIAL_LOGIT_SCALE):
    logits = clip_logits(image, text, float(logit_scale))
    pairs = torch.arange(len(logits))
    return (F.cross_entropy(logits, pairs) + F.cross_entropy(logits.T, pairs)) / 2
''',
}
EXPECTED = {"q1": 2, "q2": 3, "q3": 0}
NOTE = ""
