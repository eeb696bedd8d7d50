"""Robust linear fits for capacity planning: scikit-learn's ``HuberRegressor`` (Huber loss, the
scale estimated jointly), observations far off the fit listed and left out, and what planning
reports: coefficients, their standard errors, R², the robust residual scale and 95 % prediction
intervals. Every result is a plain dict of floats and lists, so it survives JSON.

Huber's loss bounds the pull of a large residual but not of a row far out in the design (a long
job is far out in ``1/frames``: least squares and Huber alike bend the law to it, down to a negative
set-up time), so the fit starts from the consensus set of scikit-learn's ``RANSACRegressor``
(rows within ``OUTLIER_REL`` of a law fitted on random minimal subsets; fixed seed, so the result is
reproducible). Rows off the final fit are then dropped and rows on it readmitted. A row is an
outlier when its residual exceeds both ``OUTLIER_SIGMA`` Huber scales and
``OUTLIER_REL`` of its fitted value (with a handful of rows per parameter Huber's scale comes out
small, so the relative bound keeps ordinary run-to-run noise of a few per cent in the fit).
Inference is the usual approximation around the final fit on the kept rows: ``s`` = their
residual standard deviation (n - p degrees of freedom), coefficient covariance s² (Z'Z)^-1, and a
prediction's interval t(0.975, n-p) · s · sqrt(1 + z (Z'Z)^-1 z').
"""

from __future__ import annotations

import math
import warnings

import numpy as np

EPSILON = 1.35  # Huber's threshold in units of the scale (95 % efficiency on normal noise)
OUTLIER_SIGMA = 4.0  # a row whose residual exceeds this many Huber scales ...
OUTLIER_REL = 0.2  # ... and this share of its fitted value is an outlier: listed, left out
MAX_ROUNDS = 3  # fit, drop outliers, refit (until none is found, at most this many times)


def t95(dof: int) -> float:
    """Two-sided 95 % quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof)) if dof > 0 else math.inf


def _huber(Z: np.ndarray, y: np.ndarray, const: int) -> tuple[np.ndarray, float]:
    """Huber fit of ``y ~ Z @ coef`` where column ``const`` of ``Z`` is the constant: the
    regressor's intercept. Columns and ``y`` are scaled to unit size for L-BFGS, results scaled
    back. Returns (coefficients, scale)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import HuberRegressor

    other = [k for k in range(Z.shape[1]) if k != const]
    cs = np.abs(Z[:, other]).max(axis=0)
    cs[cs == 0] = 1.0
    ys = float(np.median(np.abs(y))) or 1.0
    h = HuberRegressor(epsilon=EPSILON, alpha=0.0, max_iter=2000, tol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        h.fit(Z[:, other] / cs, y / ys)
    coef = np.empty(Z.shape[1])
    coef[other] = h.coef_ / cs * ys
    coef[const] = h.intercept_ * ys
    return coef, float(h.scale_) * ys


def _consensus(Z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """RANSAC's inlier mask (relative residual <= ``OUTLIER_REL``); every row when there are too
    few rows for a consensus or none is found."""
    from sklearn.linear_model import LinearRegression, RANSACRegressor

    n, p = Z.shape
    if n <= p + 1:
        return np.ones(n, dtype=bool)
    r = RANSACRegressor(LinearRegression(fit_intercept=False), min_samples=p + 1,
                        residual_threshold=OUTLIER_REL, random_state=0, max_trials=200,
                        loss=lambda yt, yp: np.abs(yt - yp) / np.maximum(np.abs(yt), 1e-300))
    try:
        r.fit(Z, y)
    except ValueError:  # no consensus set: start from every row
        return np.ones(n, dtype=bool)
    keep = np.asarray(r.inlier_mask_, dtype=bool)
    return keep if keep.sum() > p else np.ones(n, dtype=bool)


def robust_fit(Z: np.ndarray, y: np.ndarray, names: list[str], const: int) -> dict:
    """Fit ``y ~ Z @ coef`` robustly; outlier rows (see the module's notes) are left out
    (``outliers``: their indices, ``ratio`` = observed / fitted, ``sigmas`` = residual in ``s``)
    and the fit is redone on the rest."""
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, p = Z.shape
    keep = _consensus(Z, y)
    for _ in range(MAX_ROUNDS):
        coef, scale = _huber(Z[keep], y[keep], const)
        resid = y - Z @ coef
        new = np.abs(resid) <= np.maximum(OUTLIER_SIGMA * scale, OUTLIER_REL * np.abs(Z @ coef))
        if (new == keep).all() or new.sum() <= p:
            break
        keep = new
    fitted = Z @ coef
    r = resid[keep]
    rank = int(np.linalg.matrix_rank(Z[keep]))
    dof = int(keep.sum()) - rank
    s = float(np.sqrt((r @ r) / dof)) if dof > 0 else None
    inv = np.linalg.pinv(Z[keep].T @ Z[keep])
    se = [s * math.sqrt(max(0.0, v)) for v in np.diag(inv)] if s is not None else [None] * p
    outliers = [{"index": int(i), "observed": float(y[i]), "fitted": float(fitted[i]),
                 "ratio": float(y[i] / fitted[i]) if fitted[i] > 0 else None,
                 "sigmas": float(resid[i] / s) if s else None}
                for i in np.flatnonzero(~keep)]
    return {"features": list(names), "coefficients": dict(zip(names, map(float, coef))),
            "std_errors": dict(zip(names, se)), "n": int(keep.sum()), "rank": rank, "dof": dof,
            "scale": s, "huber_scale": scale, "residual_max": float(np.abs(r).max()) if len(r) else None,
            "t95": t95(dof), "ztz_inv": inv.tolist(), "kept": keep.tolist(), "outliers": outliers,
            "estimator": f"sklearn HuberRegressor(epsilon={EPSILON}); outliers: residual > {OUTLIER_SIGMA} "
                         f"scales and > {OUTLIER_REL:.0%} of the fit, left out"}


def interval(fit: dict, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions for the rows of ``z`` (the fit's own design) and the half-width of their 95 %
    prediction interval."""
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    coef = np.array([fit["coefficients"][k] for k in fit["features"]])
    yhat = z @ coef
    if fit.get("scale") is None:
        return yhat, np.full(len(z), np.nan)
    lever = np.einsum("ij,jk,ik->i", z, np.asarray(fit["ztz_inv"]), z)
    return yhat, fit["t95"] * fit["scale"] * np.sqrt(1.0 + np.maximum(lever, 0.0))


def r2(y: np.ndarray, fitted: np.ndarray) -> float | None:
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - fitted) ** 2).sum()) / ss_tot if ss_tot > 0 else None
