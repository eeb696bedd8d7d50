"""Ordinary least squares with what capacity planning reports: coefficients, their standard
errors, R², residual spread and 95 % prediction intervals. Pure numpy (scipy only for the
t quantile); every result is a plain dict of floats and lists, so it survives JSON."""

from __future__ import annotations

import math

import numpy as np


def t95(dof: int) -> float:
    """Two-sided 95 % quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof)) if dof > 0 else math.inf


def least_squares(X: np.ndarray, y: np.ndarray, names: list[str]) -> dict:
    """Fit ``y ~ X @ coef``. Columns are scaled to unit norm for the solve (frames x pixels and a
    constant differ by orders of magnitude) and the results scaled back. ``xtx_inv`` is
    (X'X)^-1 in the original units, kept so predictions get their interval without the data."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, p = X.shape
    scale = np.linalg.norm(X, axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale
    coef_s, _, rank, _ = np.linalg.lstsq(Xs, y, rcond=None)
    coef = coef_s / scale
    resid = y - X @ coef
    ss_res = float(resid @ resid)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    dof = n - int(rank)
    s = math.sqrt(ss_res / dof) if dof > 0 else None
    inv_s = np.linalg.pinv(Xs.T @ Xs)
    xtx_inv = inv_s / np.outer(scale, scale)
    se = [s * math.sqrt(max(0.0, v)) for v in np.diag(xtx_inv)] if s is not None else [None] * p
    return {"features": list(names), "coefficients": dict(zip(names, map(float, coef))),
            "std_errors": dict(zip(names, se)), "n": int(n), "rank": int(rank), "dof": int(dof),
            "r2": (1.0 - ss_res / ss_tot) if ss_tot > 0 else None, "residual_std": s,
            "residual_max": float(np.abs(resid).max()) if n else None,
            "t95": t95(dof), "xtx_inv": xtx_inv.tolist()}


def predict_with_interval(fit: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions for the rows of ``x`` and the half-width of their 95 % prediction interval:
    t95 x residual std x sqrt(1 + x (X'X)^-1 x')."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    coef = np.array([fit["coefficients"][k] for k in fit["features"]])
    yhat = x @ coef
    if fit.get("residual_std") is None:
        return yhat, np.full(len(x), np.nan)
    inv = np.asarray(fit["xtx_inv"])
    lever = np.einsum("ij,jk,ik->i", x, inv, x)
    return yhat, fit["t95"] * fit["residual_std"] * np.sqrt(1.0 + np.maximum(lever, 0.0))
