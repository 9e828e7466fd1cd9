"""A queue without wrap-around: when a batch does not fit before the end, it restarts at slot 0.

It works when the batch size divides the queue size (MoCo's own code assumes it does),
but otherwise the last slots keep stale keys forever. It rejects batches larger than the
queue and writes in place, so two of the four tests of q2 pass.
"""

ANSWERS = {
    "q2": '''
@torch.no_grad()
def enqueue(queue, pointer, keys):
    if len(keys) > len(queue):
        raise ValueError("the batch is larger than the queue")
    if pointer + len(keys) > len(queue):      # no room left at the end: start again at the top
        pointer = 0
    queue[pointer:pointer + len(keys)] = keys
    return (pointer + len(keys)) % len(queue)
''',
}
EXPECTED = {"q1": 3, "q2": 1.5, "q3": 2, "q4": 0}
NOTE = ""
