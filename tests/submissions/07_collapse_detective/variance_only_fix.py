"""Run C fixed with the variance term alone: the agreement term plus VICReg's variance hinge.

Each dimension now varies, but all of them along about one direction: the effective rank stays
near 1, far below the threshold of 10, so both tests of q5 fail. The fix run is trained here
(q5 is not left empty), which checks the threshold on a real near-miss.
"""

ANSWERS = {
    "q5": '''
def fixed_loss(z1, z2, sim_weight=25.0, var_weight=25.0, cov_weight=1.0):
    return agreement_only(z1, z2) + vicreg(z1, z2, 0.0, var_weight, 0.0)


fixed = vicreg_run(loss_fn=fixed_loss)
''',
}
EMPTY = ()
EXPECTED = {"q1": 3, "q2": 2, "q3": 2, "q4": 3, "q5": 0}
NOTE = ""
