"""Wrong answers: InfoNCE forgets to normalise the queue; tau_half is a guess."""

ANSWERS = {
    "q4": '''
def info_nce(query, key, queue, temperature=0.07):
    q = query / query.norm(dim=1, keepdim=True)
    k = key / key.norm(dim=1, keepdim=True)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
''',
    "q5": '''
tau_half = 0.5   # looks about right on the figure
print(f"tau_half = {tau_half:.4f}")
''',
}
EXPECTED = {"q1": 2, "q2": 3, "q3": 3, "q4": 0, "q5": 0, "q6": 0}
NOTE = ""
