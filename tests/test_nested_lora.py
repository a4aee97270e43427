"""The NestedLoRA gradient equals autograd of the plain formula."""
import pytest
import torch

from pyg_spectral.losses import NestedLoRA, subspace_lora_loss
from pyg_spectral.losses import LoRATerms
from pyg_spectral.operators import GraphOperator, symmetric_cross


def ip(a, b):
    return (a * b).mean()


def plain_lora(F, G, T, upto):
    r"""L(f_{1:i}, g_{1:i}) straight from the definition, with T applied by
    autograd (G is F for the EVD form)."""
    TF = T @ F
    out = 0
    for l in range(upto):
        out = out - 2 * ip(G[:, l], TF[:, l])
        for m in range(upto):
            out = out + ip(F[:, l], F[:, m]) * ip(G[:, l], G[:, m])
    return out


def _problem(svd, seed=0, n=9, k=4):
    gen = torch.Generator().manual_seed(seed)
    T = torch.randn(n, n, generator=gen, dtype=torch.float64)
    if not svd:
        T = T + T.T
    F = torch.randn(n, k, generator=gen, dtype=torch.float64, requires_grad=True)
    G = torch.randn(n, k, generator=gen, dtype=torch.float64, requires_grad=True) if svd else None
    return T, F, G


def _terms(T, F, G):
    if G is None:
        return LoRATerms(F, None, symmetric_cross(F, T @ F.detach()))
    Tf, Ttg = T @ F.detach(), T.T @ G.detach()
    cross = (G * Tf).mean(0) + (F * Ttg).mean(0) - (G.detach() * Tf).mean(0)
    return LoRATerms(F, G, cross)


@pytest.mark.parametrize('svd', [False, True])
def test_joint_gradient_matches_autograd(svd):
    k = 4
    w = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    T, F, G = _problem(svd, k=k)
    loss = NestedLoRA(k, 'joint', level_weights=w).double()(_terms(T, F, G))
    grads = torch.autograd.grad(loss, [F] + ([G] if svd else []))

    F2 = F.detach().clone().requires_grad_()
    G2 = G.detach().clone().requires_grad_() if svd else None
    ref = sum(w[i] * plain_lora(F2, G2 if svd else F2, T, i + 1) for i in range(k))
    ref_grads = torch.autograd.grad(ref, [F2] + ([G2] if svd else []))
    assert torch.allclose(loss, ref)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize('svd', [False, True])
def test_sequential_gradient_is_per_level_gradient(svd):
    k = 4
    T, F, G = _problem(svd, seed=1, k=k)
    loss = NestedLoRA(k, 'sequential').double()(_terms(T, F, G))
    grads = torch.autograd.grad(loss, [F] + ([G] if svd else []))
    # value: the plain loss of all k components
    assert torch.allclose(loss, plain_lora(F, G if svd else F, T, k))
    for l in range(k):
        # component l sees L(f_{1:l+1}) with earlier components held fixed
        F2 = torch.cat([F[:, :l].detach(), F[:, l:l + 1].detach().requires_grad_()], 1)
        if svd:
            G2 = torch.cat([G[:, :l].detach(), G[:, l:l + 1].detach().requires_grad_()], 1)
        ref = plain_lora(F2, G2 if svd else F2, T, l + 1)
        # differentiate w.r.t. the l-th column only
        inputs = [F2] + ([G2] if svd else [])
        ref_grads = torch.autograd.grad(ref, inputs)
        assert torch.allclose(grads[0][:, l], ref_grads[0][:, l], atol=1e-12)
        if svd:
            assert torch.allclose(grads[1][:, l], ref_grads[1][:, l], atol=1e-12)


def test_split_batch_metric_is_unbiased_product_of_halves():
    F = torch.randn(10, 3, dtype=torch.float64)
    terms = LoRATerms(F, None, torch.zeros(3, dtype=torch.float64))
    loss = NestedLoRA(3, 'joint', split_batch=True).double()(terms)
    m1 = F[:5].T @ F[:5] / 5
    m2 = F[5:].T @ F[5:] / 5
    mask = NestedLoRA(3, 'joint').joint_mask.double()
    assert torch.allclose(loss, (mask * m1 * m2).sum())


def test_bad_arguments():
    with pytest.raises(ValueError, match='k'):
        NestedLoRA(0)
    with pytest.raises(ValueError, match='nesting'):
        NestedLoRA(3, 'parallel')
    with pytest.raises(ValueError, match='level_weights'):
        NestedLoRA(3, level_weights=torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match=r'f must have shape'):
        NestedLoRA(3)(LoRATerms(torch.randn(5, 2), None, torch.zeros(2)))


@pytest.mark.parametrize('nesting', ['joint', 'sequential'])
@pytest.mark.parametrize('level_weights', [None, torch.tensor([0.5, 0.1, 0.3, 0.1])])
def test_table_gradient_equals_autograd(nesting, level_weights):
    # the solver's closed-form free-table gradient against autograd of forward()
    T, F, _ = _problem(svd=False, seed=3)
    lora = NestedLoRA(4, nesting, level_weights)
    loss = lora(_terms(T, F, None))
    expected, = torch.autograd.grad(loss, F)
    value, grad, cross = lora.table_gradient(F.detach(), T @ F.detach())
    assert torch.allclose(grad, expected, atol=1e-12)
    assert torch.allclose(value, loss.detach(), atol=1e-12)
    assert torch.allclose(cross, (F * (T @ F)).mean(0).detach(), atol=1e-12)
    with pytest.raises(ValueError, match='split_batch'):
        NestedLoRA(4, split_batch=True).table_gradient(F.detach(), T @ F.detach())


def _psd_operator(n: int, seed: int) -> tuple[torch.Tensor, GraphOperator]:
    gen = torch.Generator().manual_seed(seed)
    B = torch.randn(n, n, generator=gen, dtype=torch.float64)
    T = B @ B.T / n
    return T, GraphOperator(T.to_sparse_csr(), 'adjacency', (0.0, float(torch.linalg.eigvalsh(T)[-1])))


def test_subspace_lora_loss_value_gradient_and_optimum():
    T, op = _psd_operator(12, seed=0)
    F = torch.randn(12, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                    requires_grad=True)
    loss = subspace_lora_loss(F, op)
    # the value: -sum of squared Ritz values of T on span F
    Q = torch.linalg.qr(F.detach()).Q
    ritz = torch.linalg.eigvalsh(Q.T @ T @ Q)
    assert torch.allclose(loss.detach(), -(ritz ** 2).sum(), atol=1e-12)
    # ... which is the LoRA loss at its best recombination f M (M M^T = H)
    M = torch.linalg.cholesky(Q.T @ T @ Q)
    G = Q @ M
    plain = -2 * torch.trace(G.T @ T @ G) + ((G.T @ G) ** 2).sum()
    assert torch.allclose(loss.detach(), plain, atol=1e-12)
    # the gradient: autograd of the plain formula through QR
    grad, = torch.autograd.grad(loss, F)
    F2 = F.detach().clone().requires_grad_(True)
    Q2 = torch.linalg.qr(F2).Q
    expected, = torch.autograd.grad(-((Q2.T @ T @ Q2) ** 2).sum(), F2)
    assert torch.allclose(grad, expected, atol=1e-10)
    # the minimum is the top-4 eigenspace, at -sum of the top-4 eigenvalues squared
    values, vectors = torch.linalg.eigh(T)
    best = subspace_lora_loss(vectors[:, -4:] @ torch.randn(4, 4, dtype=torch.float64), op)
    assert torch.allclose(best, -(values[-4:] ** 2).sum(), atol=1e-12)
    assert loss > best


def test_subspace_lora_loss_of_lower_rank():
    T, op = _psd_operator(12, seed=2)
    F = torch.randn(12, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3),
                    requires_grad=True)
    loss = subspace_lora_loss(F, op, rank=2)
    Q = torch.linalg.qr(F.detach()).Q
    ritz, S = torch.linalg.eigh(Q.T @ T @ Q)
    assert torch.allclose(loss.detach(), -(ritz[-2:] ** 2).sum(), atol=1e-12)
    # the LoRA loss of the best two functions inside the span: the top Ritz pairs
    G = Q @ S[:, -2:] * ritz[-2:].sqrt()
    plain = -2 * torch.trace(G.T @ T @ G) + ((G.T @ G) ** 2).sum()
    assert torch.allclose(loss.detach(), plain, atol=1e-12)
    grad, = torch.autograd.grad(loss, F)
    F2 = F.detach().clone().requires_grad_(True)
    Q2 = torch.linalg.qr(F2).Q
    expected, = torch.autograd.grad(-(torch.linalg.eigvalsh(Q2.T @ T @ Q2)[-2:] ** 2).sum(), F2)
    assert torch.allclose(grad, expected, atol=1e-10)
    with pytest.raises(ValueError, match='rank'):
        subspace_lora_loss(F, op, rank=6)


def test_subspace_lora_loss_bad_shape():
    _, op = _psd_operator(6, seed=0)
    with pytest.raises(ValueError, match='f must have shape'):
        subspace_lora_loss(torch.randn(5, 2, dtype=torch.float64), op)
    with pytest.raises(ValueError, match='f must have shape'):
        subspace_lora_loss(torch.randn(6, 7, dtype=torch.float64), op)


def test_scalar_cross_term_is_refused():
    f = torch.randn(8, 3)
    with pytest.raises(ValueError, match=r'cross must have shape \[3\]'):
        NestedLoRA(3)(LoRATerms(f, None, torch.tensor(1.0)))
