"""VICReg with the biased variance and covariance (dividing by N, not N - 1).

The paper's variance and covariance are unbiased. With N = 2 the biased covariance is half the
right one, so the public example already fails; the hidden comparisons fail on every batch. The
batch-of-one check still raises, so one of the four tests of q1 passes.
"""

ANSWERS = {
    "q1": '''
def vicreg(z1, z2, sim_weight=25.0, var_weight=25.0, cov_weight=1.0):
    if len(z1) < 2:
        raise ValueError("need two embeddings")

    def variance(z):
        return torch.relu(1 - torch.sqrt(z.var(dim=0, unbiased=False) + 1e-4)).mean()

    def covariance(z):
        centred = z - z.mean(dim=0)
        c = centred.T @ centred / len(z)
        return (c.pow(2).sum() - c.diagonal().pow(2).sum()) / z.shape[1]

    return (sim_weight * F.mse_loss(z1, z2) + var_weight * (variance(z1) + variance(z2))
            + cov_weight * (covariance(z1) + covariance(z2)))
''',
}
EXPECTED = {"q1": 0.75, "q2": 2, "q3": 2, "q4": 3, "q5": 0}
NOTE = ""
