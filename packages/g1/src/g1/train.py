"""GRPO training with trl's ``GRPOTrainer`` and G1's hyperparameters as defaults.

Launch on several GPUs with ``accelerate launch -m g1.cli train ...``: trl and accelerate do
the distribution, nothing here is device-specific. vLLM (colocated) is used when it is
installed and a GPU is present, as in G1's verl recipe.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import torch

from g1.instance import generate_dataset
from g1.rewards import reward_functions
from kernelkit.utils import progress_enabled
from kernelkit.validation import check_model_path

__all__ = ["TrainConfig", "build_dataset", "train"]


@dataclass
class TrainConfig:
    """GRPO settings; defaults follow G1's ``run_3B.sh``/paper where it states them."""

    model: str = field(metadata={"help": "path (or hub id) of the causal LM to train"})
    output_dir: str = field(default="g1-grpo", metadata={"help": "where checkpoints and logs go"})
    tasks: tuple[str, ...] = field(default=(), metadata={"help": "task names (empty: all 50)"})
    n_per_task: int = field(default=100, metadata={"help": "training prompts generated per task"})
    seed: int = field(default=0, metadata={"help": "dataset and training seed"})
    n_nodes: int | None = field(
        default=None, metadata={"help": "fix the graph size (default: the task's range)"}
    )
    num_generations: int = field(default=5, metadata={"help": "completions per prompt (G1: n=5)"})
    beta: float = field(default=0.001, metadata={"help": "KL coefficient (G1: 0.001, low_var_kl)"})
    learning_rate: float = field(
        default=1e-6, metadata={"help": "constant learning rate (G1: 1e-6)"}
    )
    temperature: float = field(default=1.0, metadata={"help": "rollout temperature (G1: 1.0)"})
    epsilon: float = field(default=0.2, metadata={"help": "PPO clip range (G1: 0.2)"})
    max_completion_length: int = field(
        default=4096, metadata={"help": "response tokens (G1: 4096)"}
    )
    per_device_train_batch_size: int = field(
        default=5, metadata={"help": "completions per device per step"}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "micro-batches per optimiser step"}
    )
    steps_per_generation: int | None = field(
        default=None,
        metadata={
            "help": "micro-batches per generated batch (default: gradient_accumulation_steps, "
            "one optimiser step per generation; G1's verl run takes 4 optimiser steps, one per "
            "PPO mini-batch, from each rollout batch)"
        },
    )
    max_steps: int = field(
        default=-1, metadata={"help": "stop after this many steps (-1: num_train_epochs)"}
    )
    num_train_epochs: float = field(
        default=3.0, metadata={"help": "epochs over the prompts (G1: 3)"}
    )
    loss_type: str = field(
        default="dapo", metadata={"help": "trl loss; dapo is closest to verl's token-mean"}
    )
    format_weight: float = field(
        default=0.0, metadata={"help": "weight of the format reward (G1: none, 0)"}
    )
    logging_steps: int = field(default=1, metadata={"help": "log every this many steps"})
    save_steps: int = field(
        default=100, metadata={"help": "checkpoint every this many steps (resume with --resume)"}
    )
    resume: bool = field(
        default=False, metadata={"help": "resume from the last checkpoint in output_dir"}
    )
    use_vllm: bool | None = field(
        default=None, metadata={"help": "generate with vLLM (default: if installed and on GPU)"}
    )


def build_dataset(config: TrainConfig):
    """A ``datasets.Dataset`` of :meth:`g1.Instance.to_record` rows (stage ``rl``, train split)."""
    from datasets import Dataset

    rows = [
        instance.to_record()
        for instance in generate_dataset(
            list(config.tasks) or None,
            config.n_per_task,
            config.seed,
            "train",
            n_nodes=config.n_nodes,
        )
    ]
    return Dataset.from_list(rows)


def train(config: TrainConfig, *, processing_class=None, callbacks=None, extra_reward_funcs=()):
    """Run GRPO and return the trainer (its ``state.log_history`` holds rewards and losses).

    ``extra_reward_funcs`` are added after g1's rewards (same trl signature).
    """
    from trl import GRPOConfig, GRPOTrainer

    if config.num_generations < 2:
        raise ValueError(
            f"num_generations must be at least 2 for group advantages, got {config.num_generations}"
        )
    use_vllm = config.use_vllm
    if use_vllm is None:
        use_vllm = torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None
    arguments = GRPOConfig(
        output_dir=config.output_dir,
        num_generations=config.num_generations,
        beta=config.beta,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant",
        temperature=config.temperature,
        epsilon=config.epsilon,
        max_completion_length=config.max_completion_length,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        steps_per_generation=config.steps_per_generation,
        max_steps=config.max_steps,
        num_train_epochs=config.num_train_epochs,
        loss_type=config.loss_type,
        logging_steps=config.logging_steps,
        disable_tqdm=not progress_enabled(),
        save_steps=config.save_steps,
        seed=config.seed,
        use_vllm=use_vllm,
        vllm_mode="colocate",
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        report_to=[],
    )
    trainer = GRPOTrainer(
        model=check_model_path("model", config.model),
        reward_funcs=[*reward_functions(format_weight=config.format_weight), *extra_reward_funcs],
        args=arguments,
        train_dataset=build_dataset(config),
        processing_class=processing_class,
        callbacks=callbacks,
    )
    has_checkpoint = config.resume and any(Path(config.output_dir).glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
    return trainer
