"""Multi-task pretext learning: one backbone, several pretext tasks' heads, their losses summed.

Doersch, Zisserman. "Multi-task Self-Supervised Visual Learning." ICCV 2017.
(On multi-task learning as an inductive bias: Caruana, "Multitask Learning", Machine Learning 1997.)

    loss = sum_t w_t loss_t(head_t(f(inputs_t)), targets_t)        f shared by every task t

Each task makes its own pseudo labels from the same images, with its own head; only the
backbone f is shared, so it must serve all of them. The paper combined relative position,
colorization, exemplar and motion segmentation on a ResNet-101 and found that the combination
beat every single task, and that "harmonizing" the inputs (e.g. grayscale everywhere, so no
task can rely on colour) and a lasso over the layers the heads read from helped a little more;
neither is done here: the tasks keep their own inputs and every head reads the pooled features.

The tasks are this unit's context tasks, built by their own classes around the one backbone
(``MultiTask(backbone, tasks=("rotation", "jigsaw"))``); ``task_hparams`` passes each its
constructor arguments. Every task draws its randomness from the one generator, in the order
of ``tasks``.
"""
import torch
from torch import nn

from ..utils import check_weight
from .counting import Counting
from .exemplar import Exemplar
from .jigsaw import Jigsaw
from .pretext import PretextTask
from .relative_position import RelativePosition
from .rotation import Rotation

TASKS = {task.name: task for task in (Rotation, RelativePosition, Jigsaw, Counting, Exemplar)}


class MultiTask(PretextTask):
    name = "multitask"
    paper = "Doersch, Zisserman. Multi-task Self-Supervised Visual Learning. ICCV 2017."
    summary = "several pretext tasks on one shared backbone, their losses summed with weights"
    defaults = {**PretextTask.defaults, "lr": 3e-3, "batch_size": 64}

    def __init__(self, backbone, tasks=("rotation", "jigsaw"), weights=None, image_size: int = 32,
                 task_hparams: dict | None = None):
        """``tasks``: names from ``TASKS``, each at most once. ``weights``: one per task (default all 1).
        ``task_hparams``: {task name: its constructor arguments}; ``image_size`` goes to every task.
        """
        super().__init__(backbone)
        tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        unknown = [name for name in tasks if name not in TASKS]
        if not tasks or unknown or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be distinct names from {', '.join(TASKS)}, got {tasks!r}")
        weights = (1.0,) * len(tasks) if weights is None else tuple(weights)
        if len(weights) != len(tasks):
            raise ValueError(f"weights must give one number per task ({len(tasks)}), got {weights!r}")
        self.weights = tuple(check_weight(w, f"weight of {name}") for w, name in zip(weights, tasks))
        task_hparams = {} if task_hparams is None else dict(task_hparams)
        if set(task_hparams) - set(tasks):
            raise ValueError(f"task_hparams names tasks that are not in {tasks}: {sorted(set(task_hparams) - set(tasks))}")
        self.image_size = image_size
        # Each task holds the same backbone object: one set of weights, updated by every loss.
        self.tasks = nn.ModuleDict({name: TASKS[name](backbone, **{"image_size": image_size,
                                                                   **task_hparams.get(name, {})})
                                    for name in tasks})
        self.batch_extras = tuple(sorted({extra for task in self.tasks.values() for extra in task.batch_extras}))

    @classmethod
    def for_data(cls, backbone, data, tasks=("rotation", "jigsaw"), task_hparams=None, **hparams):
        """Every task gets the data's image size; exemplar also the number of training images."""
        tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        task_hparams = {name: dict(given) for name, given in (task_hparams or {}).items()}
        if "exemplar" in tasks:
            task_hparams["exemplar"] = {"n_classes": len(data.train_images), **task_hparams.get("exemplar", {})}
        return cls(backbone, tasks=tasks, task_hparams=task_hparams, **{"image_size": data.image_size, **hparams})

    def task_losses(self, images: torch.Tensor, generator: torch.Generator, **extras) -> dict:
        """{task name: its loss on ``images``}, the tasks run in order on the one generator."""
        return {name: task.training_step(images, generator, **{key: extras[key] for key in task.batch_extras})
                for name, task in self.tasks.items()}

    def training_step(self, images, generator, **extras):
        losses = self.task_losses(images, generator, **extras)
        return sum(weight * loss for weight, loss in zip(self.weights, losses.values()))

    def hparams(self):
        return {"tasks": tuple(self.tasks), "weights": self.weights, "image_size": self.image_size,
                "task_hparams": {name: {key: value for key, value in task.hparams().items() if key != "image_size"}
                                 for name, task in self.tasks.items()}}
