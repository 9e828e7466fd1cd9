"""The momentum update with m and 1 - m swapped: the target takes m of the online network.

The key encoder then all but copies the query encoder (m = 0.99 becomes 0.01). Buffers are
copied, the online network is untouched and the update is in place, so one hidden test passes.
"""

ANSWERS = {
    "q1": '''
@torch.no_grad()
def momentum_update(online, target, momentum):
    for theta_k, theta_q in zip(target.parameters(), online.parameters()):
        theta_k.copy_((1 - momentum) * theta_k + momentum * theta_q)
    for stats_k, stats_q in zip(target.buffers(), online.buffers()):
        stats_k.copy_(stats_q)
''',
}
EXPECTED = {"q1": 1, "q2": 3, "q3": 2, "q4": 0}
NOTE = ""
