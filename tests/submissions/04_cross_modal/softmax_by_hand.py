"""The two cross-entropies written with exp and log, without the log-sum-exp shift: fine in float64, not in float32 at scale 100.

exp(100) overflows float32, so matching pairs at the largest scale give an infinite loss. The public test's
first example (4 orthogonal float32 pairs at scale 100) and the float32 edge cases fail; the comparison with
the library, in float64 and at scale 1/0.07 in float32, passes: one test of three.
"""

ANSWERS = {
    "q1": '''
def clip_loss(image, text, logit_scale=INITIAL_LOGIT_SCALE):
    logits = clip_logits(image, text, logit_scale)
    exp = logits.exp()
    image_to_text = -(logits.diagonal() - exp.sum(dim=1).log()).mean()
    text_to_image = -(logits.diagonal() - exp.sum(dim=0).log()).mean()
    return (image_to_text + text_to_image) / 2
''',
}
EXPECTED = {"q1": 1, "q2": 3, "q3": 0}
NOTE = ""
