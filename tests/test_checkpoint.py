"""Long sampled fits: checkpoints resume exactly; a non-finite loss stops the
fit naming the step and keeps the last good checkpoint; the fit's randomness
is its own generator's and its schedule is torch's."""
import math

import pytest
import torch

from pyg_spectral.nn import EigenfunctionMLP
from pyg_spectral.operators import CDK, Hamiltonian
from pyg_spectral.solvers import SampledNeuralSVD
from pyg_spectral.io import atomic_save
from pyg_spectral.solvers.checkpoint import load_checkpoint
from pyg_spectral.solvers.sampled import warmup_cosine_schedule


def make_fit(seed=0):
    torch.manual_seed(seed)
    # Hutchinson probes draw from the sampling generator too
    op = Hamiltonian.harmonic_oscillator(2, hutchinson_probes=2)
    model = EigenfunctionMLP(2, 3, hidden_channels=16, num_layers=2, fourier_features=8)
    solver = SampledNeuralSVD(3, lr=1e-2, batch_size=32, ema_decay=0.9, warmup_steps=3)
    return op, model, solver


@pytest.mark.parametrize('interrupt', [2, 10])  # in the warm-up, in the decay
def test_resume_equals_uninterrupted(tmp_path, interrupt):
    op, model, solver = make_fit()
    full = solver.fit(op, model, steps=20, progress=False, eval_samples=256, eval_batch_size=256)

    path = tmp_path / 'fit.pt'
    op, model, solver = make_fit()
    stop_at = lambda step, loss, values: step + 1 == interrupt
    solver.fit(op, model, steps=20, check_every=1, callback=stop_at, checkpoint=path,
               checkpoint_every=interrupt, progress=False, eval_samples=256, eval_batch_size=256)
    assert load_checkpoint(path)['step'] == interrupt

    # a fresh process: new model object with another initialisation
    op, model, solver = make_fit(seed=123)
    resumed = solver.fit(op, model, steps=20, checkpoint=path, checkpoint_every=5,
                         progress=False, eval_samples=256, eval_batch_size=256)
    assert resumed.steps == full.steps == 20
    assert resumed.loss_history == full.loss_history
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(resumed.eigenvalues, full.eigenvalues)
    assert load_checkpoint(path)['step'] == 20


def test_checkpoint_of_another_fit_is_refused(tmp_path):
    path = tmp_path / 'fit.pt'
    op, model, solver = make_fit()
    solver.fit(op, model, steps=4, checkpoint=path, checkpoint_every=2, progress=False,
               eval_samples=64, eval_batch_size=64)
    other = SampledNeuralSVD(3, lr=1e-3, batch_size=32)
    with pytest.raises(ValueError, match='different fit'):
        other.fit(op, model, steps=4, checkpoint=path, progress=False)


class NaNAfter(torch.nn.Module):
    """Wraps a model and returns NaN from its `calls`-th call on."""

    def __init__(self, model, calls):
        super().__init__()
        self.model, self.calls, self.seen = model, calls, 0

    def forward(self, x):
        self.seen += 1
        out = self.model(x)
        return out * float('nan') if self.seen >= self.calls else out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    op = CDK.gaussian(0.5)
    f = NaNAfter(EigenfunctionMLP(1, 2, hidden_channels=8, num_layers=1), calls=8)
    g = EigenfunctionMLP(1, 2, hidden_channels=8, num_layers=1)
    path = tmp_path / 'fit.pt'
    with pytest.raises(FloatingPointError, match=r"at step 7; the last good checkpoint "
                                                 r"\(step 5\) is kept"):
        SampledNeuralSVD(2, batch_size=16).fit(op, (f, g), steps=20, checkpoint=path,
                                               checkpoint_every=5, progress=False)
    state = load_checkpoint(path)
    assert state['step'] == 5 and len(state['loss_history']) == 5
    assert all(torch.isfinite(v).all() for v in state['models'].values())


def old_rate_factor(step, steps, warmup_steps, min_lr_ratio):
    # the closed form the fit's schedule had before it was torch's
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@pytest.mark.parametrize('steps,warmup_steps,min_lr_ratio', [
    (50, 0, 0.0), (50, 1, 0.0), (50, 7, 0.1), (2000, 100, 0.01), (5, 8, 0.0)])
def test_schedule_gives_the_rates_of_the_closed_form(steps, warmup_steps, min_lr_ratio):
    lr = 3e-3
    optimizer = torch.optim.SGD([torch.zeros(0, requires_grad=True)], lr=lr)
    schedule = warmup_cosine_schedule(optimizer, steps, warmup_steps, min_lr_ratio)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        schedule.step()
    expected = [lr * old_rate_factor(i, steps, warmup_steps, min_lr_ratio) for i in range(steps)]
    # torch's schedulers update the rate by a ratio per step, the closed form
    # recomputes it: equal up to rounding that accumulates over the steps
    assert rates == pytest.approx(expected, rel=1e-12, abs=1e-12 * lr)


def test_fit_leaves_the_global_generator_alone(tmp_path):
    path = tmp_path / 'fit.pt'
    op, model, solver = make_fit()
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    torch.manual_seed(7)
    before = torch.get_rng_state()
    stop_at = lambda step, loss, values: step + 1 == 5
    solver.fit(op, model, steps=10, callback=stop_at, check_every=5, checkpoint=path,
               checkpoint_every=5, progress=False, eval_samples=64, eval_batch_size=64)
    resumed = solver.fit(op, model, steps=10, checkpoint=path, progress=False,
                         eval_samples=64, eval_batch_size=64)
    assert torch.equal(torch.get_rng_state(), before)
    assert 'rng' not in load_checkpoint(path)

    # and does not depend on it: the same start under another global state
    model.load_state_dict(initial)
    torch.manual_seed(8)
    again = solver.fit(op, model, steps=10, progress=False, eval_samples=64, eval_batch_size=64)
    assert again.loss_history == resumed.loss_history
    assert torch.equal(again.eigenvalues, resumed.eigenvalues)


def test_checkpoint_with_the_former_lambda_schedule_resumes(tmp_path):
    r"""A checkpoint written when the schedule was a LambdaLR of the closed
    form (and the global generator states were saved) continues on the same
    rates; the hydrogen benchmark's committed checkpoints are such files."""
    steps, interrupt = 20, 10
    full_path, path = tmp_path / 'full.pt', tmp_path / 'fit.pt'
    op, model, solver = make_fit()
    solver.fit(op, model, steps=steps, checkpoint=full_path, checkpoint_every=steps,
               progress=False, eval_samples=64, eval_batch_size=64)
    op, model, solver = make_fit()
    stop_at = lambda step, loss, values: step + 1 == interrupt
    solver.fit(op, model, steps=steps, check_every=interrupt, callback=stop_at, checkpoint=path,
               checkpoint_every=interrupt, progress=False, eval_samples=64, eval_batch_size=64)

    state = load_checkpoint(path)
    factor = lambda i: old_rate_factor(i, steps, solver.warmup_steps, solver.min_lr_ratio)
    optimizer = torch.optim.SGD([torch.zeros(0, requires_grad=True)], lr=solver.lr)
    former = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    for _ in range(interrupt):
        optimizer.step()
        former.step()
    state['schedule'] = former.state_dict()
    state['optimizer']['param_groups'][0]['lr'] = solver.lr * factor(interrupt)
    state['rng'] = {'cpu': torch.get_rng_state()}
    atomic_save(state, path)

    op, model, solver = make_fit(seed=123)
    resumed = solver.fit(op, model, steps=steps, checkpoint=path, progress=False,
                         eval_samples=64, eval_batch_size=64)
    assert resumed.steps == steps
    rate = lambda file: load_checkpoint(file)['optimizer']['param_groups'][0]['lr']
    assert rate(path) == pytest.approx(rate(full_path), rel=1e-12)
    assert resumed.loss_history == pytest.approx(load_checkpoint(full_path)['loss_history'],
                                                 rel=1e-4)
