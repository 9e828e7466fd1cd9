"""An exception: the loop version indexes past the end (the positive of i is i + N, modulo 2N)."""

ANSWERS = {
    "q2": '''
def nt_xent_loops(z1, z2, temperature=0.5):
    n = z1.shape[0]
    z = torch.cat([z1, z2])
    sim = cosine_similarity_matrix(z, z)
    losses = []
    for i in range(2 * n):
        denominator = sum(torch.exp(sim[i, k] / temperature) for k in range(2 * n) if k != i)
        losses.append(torch.log(denominator) - sim[i, i + n] / temperature)   # IndexError for i >= n
    return torch.stack(losses).mean()
''',
}
EXPECTED = {"q1": 2, "q2": 0, "q3": 3, "q4": 3, "q5": 2, "q6": 0}
NOTE = ""
