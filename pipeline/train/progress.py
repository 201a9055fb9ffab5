"""A training progress bar that shows the running loss (transformers' own bar prints log lines instead)."""

from __future__ import annotations

from transformers.trainer_callback import ProgressCallback


class LossProgressCallback(ProgressCallback):
    """transformers' progress bar, with the last logged loss and learning rate as its postfix."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {k: f"{v:.4g}" for k, v in logs.items() if k in ("loss", "learning_rate") and isinstance(v, float)}
            if shown:
                self.training_bar.set_postfix(shown, refresh=False)


def use_loss_bar(trainer, progress: bool) -> None:
    """Swap the trainer's default bar for :class:`LossProgressCallback` (or none without ``progress``)."""
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(LossProgressCallback())
