"""Short training runs: so(2) discovery and its control, baselines, checkpoints, CLI."""

from __future__ import annotations

import json

import pytest
import semola
import torch
from semola import (
    SEMoLA,
    TrainConfig,
    build_trainer,
    compare_algebras,
    fit,
    make_task,
    so2_generator,
)
from semola.cli import main

from kernelkit.testing import assert_close

COSINE_THRESHOLD = 0.95


def _discover(name: str, seed: int = 0) -> tuple[float, float]:
    task = make_task(name, num_samples=1024, seed=seed)
    config = TrainConfig(
        task=name, steps=200, batch_size=64, hidden=32, seed=seed, num_samples=1024
    )
    trainer = build_trainer(task, config, semola.SEMoLALossConfig(num_views=2))
    fit(trainer, task, config)
    cosine = compare_algebras(trainer.augmenter.basis().detach(), so2_generator()).score
    signature = semola.symmetry_signature(
        trainer.base_model,
        trainer.augmenter,
        task.x_test,
        generator=torch.Generator().manual_seed(0),
    )
    return cosine, signature.relative_equivariance_error


@pytest.mark.slow
def test_short_run_recovers_so2_and_control_does_not():
    cosine, error = _discover("rotation2d")
    control_cosine, control_error = _discover("no_symmetry2d", seed=2)
    assert cosine > COSINE_THRESHOLD
    assert control_cosine < COSINE_THRESHOLD
    assert control_error > 10 * error


def test_every_method_trains_on_every_vector_task():
    for name in ("rotation2d", "so3_points", "3body"):
        task = make_task(name, num_samples=64)
        for method in semola.METHODS:
            config = TrainConfig(
                task=name, method=method, steps=3, batch_size=16, num_samples=64, hidden=8
            )
            trainer = build_trainer(task, config)
            result = fit(trainer, task, config, log_every=1)
            assert len(result.history) == 3
            metrics = semola.evaluate(trainer, task)
            assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_n_body_data_is_rotation_equivariant():
    task = semola.make_n_body(32, horizon=0.1, seed=1)
    rotated = semola.make_n_body(32, horizon=0.1, seed=1)
    assert_close(task.x_train, rotated.x_train)
    g = torch.linalg.matrix_exp(so2_generator() * 0.7).expand(task.x_train.shape[0], 2, 2)
    # Integrate the rotated initial state by hand and compare with the rotated end state.
    state = semola.VectorAction(2)(g, task.x_train).double()
    positions, velocities = state[:, :, 0], state[:, :, 1]
    from semola.data import _gravity

    acceleration = _gravity(positions, 0.1)
    for _ in range(10):
        velocities = velocities + 0.005 * acceleration
        positions = positions + 0.01 * velocities
        acceleration = _gravity(positions, 0.1)
        velocities = velocities + 0.005 * acceleration
    end = torch.stack([positions, velocities], 2).float()
    assert_close(end, semola.VectorAction(2)(g, task.y_train), atol=1e-4, rtol=1e-4)


def test_digits_task_and_cnn_step():
    task = semola.make_digits(max_samples=60)
    assert task.x_train.shape[1:] == (1, 12, 12) and task.x_shift is not None
    for method in semola.METHODS:
        config = TrainConfig(task="digits", method=method, steps=2, batch_size=8, hidden=16)
        trainer = build_trainer(task, config, semola.SEMoLALossConfig(num_views=2))
        fit(trainer, task, config)
        assert 0.0 <= semola.evaluate(trainer, task)["shift_accuracy"] <= 1.0


def test_average_inference_of_invariant_model_equals_base():
    class Norms(torch.nn.Module):
        def forward(self, x):
            return (x**2).sum((1, 2))

    augmenter = semola.LieAugmenter(2, 1, init=so2_generator(), coefficient_scale=3.0)
    model = SEMoLA(Norms(), augmenter, inference="average", inference_views=5)
    x = torch.randn(7, 4, 2)
    assert_close(model(x), Norms()(x), atol=1e-5, rtol=1e-5)


def test_average_inference_undoes_equivariant_output_action():
    augmenter = semola.LieAugmenter(2, 1, init=so2_generator(), coefficient_scale=3.0)
    model = SEMoLA(
        torch.nn.Identity(), augmenter, output_action=semola.VectorAction(2), inference="average"
    )
    x = torch.randn(5, 3, 2)
    assert_close(model(x), x, atol=1e-5, rtol=1e-5)


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    task = make_task("rotation2d", num_samples=128)
    full_config = TrainConfig(steps=6, batch_size=16, num_samples=128, hidden=8, checkpoint_every=3)
    uninterrupted = build_trainer(task, full_config)
    fit(uninterrupted, task, full_config)

    half_config = TrainConfig(steps=3, batch_size=16, num_samples=128, hidden=8, checkpoint_every=3)
    first = build_trainer(task, half_config)
    fit(first, task, half_config, checkpoint_dir=tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["config"]["config"]["steps"] = 6
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    resumed = build_trainer(task, full_config)
    result = fit(resumed, task, full_config, checkpoint_dir=tmp_path)
    assert result.history[-1]["step"] == 6
    for (name, a), (_, b) in zip(
        uninterrupted.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert_close(a, b, atol=1e-6, rtol=1e-5), name


def test_checkpoint_for_another_config_is_refused(tmp_path):
    task = make_task("rotation2d", num_samples=64)
    config = TrainConfig(steps=2, batch_size=8, num_samples=64, hidden=8)
    fit(build_trainer(task, config), task, config, checkpoint_dir=tmp_path)
    other = TrainConfig(steps=2, batch_size=8, num_samples=64, hidden=8, lr=1e-2)
    with pytest.raises(ValueError, match="another config"):
        fit(build_trainer(task, other), task, other, checkpoint_dir=tmp_path)


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="method must be one of"):
        TrainConfig(method="magic")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="name must be one of"):
        make_task("mnist")
    with pytest.raises(ValueError, match="no ground-truth symmetry"):
        build_trainer(
            make_task("no_symmetry2d", num_samples=64), TrainConfig(method="ground_truth")
        )


def test_cli_train_eval_and_discover(tmp_path, capsys):
    common = [
        "--task",
        "rotation2d",
        "--steps",
        "4",
        "--batch-size",
        "16",
        "--num-samples",
        "64",
        "--hidden",
        "8",
        "--loss-num-views",
        "2",
    ]
    assert main(["train", *common, "--out", str(tmp_path / "run")]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["config"]["steps"] == 4 and "test_mse" in trained["metrics"]
    assert main(["eval", *common, "--checkpoint", str(tmp_path / "run")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["metrics"]["test_mse"] == pytest.approx(trained["metrics"]["test_mse"])
    assert main(["discover", *common, "--out", str(tmp_path / "disc")]) == 0
    output = capsys.readouterr().out
    assert "principal_cosines" in output and (tmp_path / "disc" / "generators.png").is_file()


def test_discovery_phase_trains_only_the_generator_through_the_equivariance_term():
    task = make_task("rotation2d", num_samples=64)
    config = TrainConfig(steps=1, batch_size=16, num_samples=64, hidden=8)
    trainer = build_trainer(task, config, semola.SEMoLALossConfig(num_views=2))
    x, y = task.x_train[:16], torch.zeros(16)  # y = f(x) makes the task loss a function of f only

    def zero_task(prediction, target):
        return 0.0 * prediction.sum()

    for discovering in (False, True):
        trainer.discovering = discovering
        trainer.zero_grad()
        trainer.compute_loss(x, y, zero_task).total.backward()
        model_grad = sum(p.grad.abs().sum() for p in trainer.base_model.parameters())
        assert (float(model_grad) == 0.0) == discovering
        assert float(trainer.augmenter.generators.grad.abs().sum()) > 0


def test_discovery_steps_and_model_options_run_on_digits():
    task = semola.make_digits(max_samples=60)
    for model in ("mlp", "cnn"):
        config = TrainConfig(
            task="digits", steps=3, batch_size=8, hidden=16, model=model, discovery_steps=2
        )
        trainer = build_trainer(task, config, semola.SEMoLALossConfig(num_views=2))
        fit(trainer, task, config)
        assert not trainer.discovering
    with pytest.raises(ValueError, match="discovery_steps must be >= 0"):
        TrainConfig(discovery_steps=-1)
    with pytest.raises(ValueError, match="model must be"):
        TrainConfig(model="resnet")


def _liegan_run(seed: int = 0, steps: int = 200, num_samples: int = 1024):
    task = semola.make_rotation_points(num_samples, seed=seed, train_orientation=None)
    config = TrainConfig(
        task="rotation2d",
        method="liegan",
        steps=steps,
        batch_size=64,
        hidden=32,
        seed=seed,
        num_samples=num_samples,
    )
    trainer = build_trainer(task, config)
    result = fit(trainer, task, config, log_every=1)
    return trainer, result


def test_liegan_baseline_runs_is_seeded_and_reads_out():
    first, result = _liegan_run(steps=5, num_samples=128)
    second, _ = _liegan_run(steps=5, num_samples=128)
    assert isinstance(first, semola.LieGAN)
    assert first.augmenter.distribution == "gaussian"
    assert set(result.history[-1]) == {"step", "task", "discriminator", "generator"}
    basis = first.augmenter.basis().detach()
    assert basis.shape == (1, 2, 2)
    assert_close(basis, second.augmenter.basis().detach())
    comparison = compare_algebras(basis, so2_generator())
    assert torch.isfinite(torch.tensor(comparison.score))
    assert torch.isfinite(torch.tensor(semola.closure_error(basis)))


def test_liegan_gradients_reach_only_their_own_parameters():
    trainer, _ = _liegan_run(steps=1, num_samples=64)
    x, y = torch.randn(8, 4, 2), torch.randn(8)
    parts = {}
    for name, weight in (("task", 1.0), ("gan", 0.0)):
        trainer.task_weight = weight
        trainer.zero_grad()
        torch.manual_seed(0)
        trainer.compute_loss(x, y, torch.nn.functional.mse_loss).total.backward()
        parts[name] = trainer.augmenter.generators.grad.clone()
    # The task term sees the group elements detached: the basis' gradient is the GAN's alone.
    assert_close(parts["task"], parts["gan"])
    assert float(parts["gan"].abs().sum()) > 0


def test_liegan_recovers_so2_when_the_inputs_are_rotation_invariant():
    # Every training orientation: the joint distribution of (x, y) is SO(2)-invariant.
    trainer, _ = _liegan_run(seed=0)
    cosine = compare_algebras(trainer.augmenter.basis().detach(), so2_generator()).score
    assert cosine > COSINE_THRESHOLD


def test_liegan_needs_num_classes_for_integer_labels():
    augmenter = semola.LieAugmenter(2, 1)
    trainer = semola.LieGAN(
        semola.point_mlp(8, (3,), 8), augmenter, semola.pair_discriminator(8 + 3, 8)
    )
    with pytest.raises(ValueError, match="num_classes"):
        trainer.compute_loss(
            torch.randn(4, 4, 2), torch.tensor([0, 1, 2, 0]), torch.nn.functional.cross_entropy
        )
    trainer.num_classes = 3
    terms = trainer.compute_loss(
        torch.randn(4, 4, 2), torch.tensor([0, 1, 2, 0]), torch.nn.functional.cross_entropy
    )
    assert torch.isfinite(terms.total)


def test_kl_equivariance_term_is_zero_for_invariant_logits_and_positive_otherwise():
    from semola import SEMoLALossConfig, VectorAction, equivariance_loss

    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    group = torch.eye(2).expand(2, 5, 2, 2)
    same = logits.unsqueeze(0).expand(2, 5, 3) + 4.0  # a logit shift leaves the softmax as is
    assert float(equivariance_loss(logits, same, group, form="kl")) == pytest.approx(0, abs=1e-6)
    other = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(1))
    assert float(equivariance_loss(logits, other, group, form="kl")) > 0
    with pytest.raises(ValueError, match="form='kl' needs invariant"):
        equivariance_loss(logits[:, :2], other[..., :2], group, VectorAction(2), form="kl")
    with pytest.raises(ValueError, match="form must be one of"):
        equivariance_loss(logits, other, group, form="cosine")
    with pytest.raises(ValueError, match="equivariance_form must be one of"):
        SEMoLALossConfig(equivariance_form="cosine")


def test_ground_truth_baseline_uses_the_configured_range():
    from semola.training import build_trainer

    task = make_task("rotation2d", num_samples=64, seed=0)
    config = TrainConfig(task="rotation2d", method="ground_truth", coefficient_scale=0.5)
    trainer = build_trainer(task, config)
    assert torch.allclose(trainer.augmenter.scales(), torch.tensor([0.5]))


def test_range_curriculum_widens_after_discovery():
    from semola.training import build_trainer, fit

    task = make_task("rotation2d", num_samples=64, seed=0)
    config = TrainConfig(
        task="rotation2d", steps=4, discovery_steps=2, widened_scale=3.0, batch_size=16, hidden=8
    )
    trainer = build_trainer(task, config)
    fit(trainer, task, config)
    assert torch.allclose(trainer.augmenter.scales(), torch.tensor([3.0]))
    with pytest.raises(ValueError, match="widened_scale must be a finite number >= 0"):
        TrainConfig(widened_scale=-1.0)
