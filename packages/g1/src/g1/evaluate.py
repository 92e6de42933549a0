"""Evaluation: accuracy per task and per tier, and the zero-variance group fraction.

A model is a local path (transformers ``generate``) or the URL of an OpenAI-compatible server
(``/v1/completions``). Sampling defaults are G1's evaluation settings (T=0.6, top-p 0.95,
top-k 30, 4,096 new tokens).
"""

from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from g1.instance import Instance, generate_dataset
from g1.tasks import TASKS, TIERS
from g1.verify import verify
from kernelkit.utils import progress
from kernelkit.validation import check_model_path

__all__ = ["EvalConfig", "EvalResult", "evaluate", "score_groups", "zero_variance_fraction"]


@dataclass
class EvalConfig:
    """What to evaluate and how to sample."""

    model: str = field(
        metadata={"help": "local model path, or http(s) URL of an OpenAI-compatible server"}
    )
    tasks: tuple[str, ...] = field(default=(), metadata={"help": "task names (empty: all 50)"})
    n_per_task: int = field(
        default=100, metadata={"help": "test prompts per task (Erdős test: 100)"}
    )
    seed: int = field(default=0, metadata={"help": "test-split seed"})
    n_nodes: int | None = field(
        default=None, metadata={"help": "fix the graph size (default: the task's range)"}
    )
    num_generations: int = field(
        default=1, metadata={"help": "samples per prompt (>1 also reports zero-variance groups)"}
    )
    max_new_tokens: int = field(default=4096, metadata={"help": "tokens per completion (G1: 4096)"})
    temperature: float = field(
        default=0.6, metadata={"help": "sampling temperature (G1 eval: 0.6)"}
    )
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling (G1 eval: 0.95)"})
    top_k: int = field(default=30, metadata={"help": "top-k sampling (G1 eval: 30)"})
    served_model_name: str = field(
        default="default", metadata={"help": "model name sent to an endpoint"}
    )


@dataclass
class EvalResult:
    """Scores of every completion, grouped per instance."""

    instances: list[Instance]
    scores: list[list[float]]

    def accuracy_by(self, key: Callable[[Instance], str]) -> dict[str, float]:
        totals: dict[str, list[float]] = defaultdict(list)
        for instance, group in zip(self.instances, self.scores, strict=True):
            totals[key(instance)].extend(group)
        return {name: sum(values) / len(values) for name, values in totals.items()}

    @property
    def per_task(self) -> dict[str, float]:
        return self.accuracy_by(lambda instance: instance.task)

    @property
    def per_tier(self) -> dict[str, float]:
        return self.accuracy_by(lambda instance: instance.tier)

    @property
    def accuracy(self) -> float:
        flat = [score for group in self.scores for score in group]
        return sum(flat) / len(flat) if flat else float("nan")

    @property
    def zero_variance_fraction(self) -> float:
        return zero_variance_fraction(self.scores)

    def table(self) -> str:
        """Markdown: accuracy per tier, then per task."""
        lines = ["| tier | accuracy |", "|---|---:|"]
        tiers = self.per_tier
        lines += [f"| {tier} | {tiers[tier]:.3f} |" for tier in TIERS if tier in tiers]
        lines += [
            f"| all | {self.accuracy:.3f} |",
            "",
            "| task | tier | accuracy |",
            "|---|---|---:|",
        ]
        lines += [
            f"| {task} | {TASKS[task].tier} | {value:.3f} |"
            for task, value in sorted(self.per_task.items())
        ]
        if self.scores and len(self.scores[0]) > 1:
            lines += [
                "",
                f"zero-variance groups ({len(self.scores[0])} samples): {self.zero_variance_fraction:.3f}",
            ]
        return "\n".join(lines)


def zero_variance_fraction(groups: Sequence[Sequence[float]]) -> float:
    """Share of groups whose rewards are all equal (they give GRPO no gradient)."""
    if not groups:
        return float("nan")
    return sum(len(set(group)) <= 1 for group in groups) / len(groups)


def score_groups(instances: Sequence[Instance], completions: Sequence[Sequence[str]]) -> EvalResult:
    """Verify ``completions[i][j]`` against ``instances[i]``."""
    if len(instances) != len(completions):
        raise ValueError(
            f"completions must have one group per instance ({len(instances)}), got {len(completions)}"
        )
    scores = [
        [verify(instance, text) for text in group]
        for instance, group in zip(instances, completions, strict=True)
    ]
    return EvalResult(list(instances), scores)


def _endpoint_sampler(config: EvalConfig) -> Callable[[str], list[str]]:
    url = config.model.rstrip("/")
    if not url.endswith("/completions"):
        url += "/v1/completions"

    def sample(prompt: str) -> list[str]:
        body = {
            "model": config.served_model_name,
            "prompt": prompt,
            "n": config.num_generations,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "top_k": config.top_k,
        }
        request = urllib.request.Request(
            url, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            return [choice["text"] for choice in json.load(response)["choices"]]

    return sample


def _local_sampler(config: EvalConfig) -> Callable[[str], list[str]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = check_model_path("model", config.model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()

    def sample(prompt: str) -> list[str]:
        if tokenizer.chat_template:
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        inputs = tokenizer(prompt, return_tensors="pt").to(device)
        with torch.no_grad():
            output = model.generate(
                **inputs,
                do_sample=True,
                temperature=config.temperature,
                top_p=config.top_p,
                top_k=config.top_k,
                max_new_tokens=config.max_new_tokens,
                num_return_sequences=config.num_generations,
                pad_token_id=tokenizer.pad_token_id,
            )
        prompt_length = inputs["input_ids"].shape[1]
        return tokenizer.batch_decode(output[:, prompt_length:], skip_special_tokens=True)

    return sample


def evaluate(
    config: EvalConfig, *, sampler: Callable[[str], list[str]] | None = None
) -> EvalResult:
    """Generate the test split, sample completions, and score them with :func:`g1.verify`."""
    if config.num_generations < 1:
        raise ValueError(f"num_generations must be at least 1, got {config.num_generations}")
    if sampler is None:
        is_url = config.model.startswith(("http://", "https://"))
        sampler = _endpoint_sampler(config) if is_url else _local_sampler(config)
    instances = list(
        generate_dataset(
            list(config.tasks) or None,
            config.n_per_task,
            config.seed,
            "test",
            stage="eval",
            n_nodes=config.n_nodes,
        )
    )
    completions = [sampler(instance.prompt) for instance in progress(instances, desc="g1 eval")]
    return score_groups(instances, completions)
