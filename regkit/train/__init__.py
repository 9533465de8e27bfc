"""One seeded training loop for the whole course, with evaluation, metric hooks, progress and resume.

``train(model, optimizer, loader, steps=...)`` runs ``optimizer.step(closure)`` on an endless
stream of ``(x, y)`` batches and returns a :class:`~regkit.history.History`. The closure
zero-grads, computes the loss and its gradient and returns the loss, so two-pass optimizers
(SAM, finite-difference gradient-norm penalties) that call it twice work unchanged.

Example::

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    hist = train(model, opt, train_loader, steps=2000, eval_loaders={"val": test_loader},
                 scheduler=warmup_cosine(opt, 100, 2000), hooks=[weight_norm_hook(model)])
    hist.df.plot(x="step", y=["train_loss", "val_loss"])

Modules: ``loop`` (``train``), ``evaluation`` (``evaluate``), ``hooks`` (metric hooks),
``checkpoint`` (atomic checkpoints and resume), ``seeding`` (``seed_everything``, RNG state),
``schedule`` (``warmup_cosine``).
"""

from regkit.device import default_device, resolve_device
from regkit.train.checkpoint import CHECKPOINT_VERSION, CheckpointError, load_checkpoint
from regkit.train.evaluation import evaluate
from regkit.train.hooks import Hook, StopTraining, effective_step_hook, grad_norm_hook, weight_norm_hook
from regkit.train.loop import GradFn, train
from regkit.train.schedule import warmup_cosine
from regkit.train.seeding import seed_everything

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "GradFn",
    "Hook",
    "StopTraining",
    "default_device",
    "effective_step_hook",
    "evaluate",
    "grad_norm_hook",
    "load_checkpoint",
    "resolve_device",
    "seed_everything",
    "train",
    "warmup_cosine",
    "weight_norm_hook",
]
