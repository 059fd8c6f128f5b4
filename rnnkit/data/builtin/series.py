"""Real time series shipped with ``statsmodels`` (the ``data`` extra): yearly sunspot numbers and
weekly Mauna Loa CO2."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import require
from ..readers import Series


def _datasets():
    return require("statsmodels.datasets", "statsmodels", "data", "the built-in sunspots and co2 series")


def sunspots() -> Series:
    """Yearly mean sunspot numbers 1700–2008 (309 values, column ``"sunspots"``), from
    ``statsmodels.datasets.sunspots`` (source: NOAA National Geophysical Data Center). No gaps.
    A cycle of about 11 years; the last-value baseline is what a forecaster must beat."""
    data = _datasets().sunspots.load_pandas().data
    return Series(torch.tensor(data["SUNACTIVITY"].to_numpy(), dtype=torch.float32).unsqueeze(1), ["sunspots"])


def co2() -> Series:
    """Weekly atmospheric CO2 at Mauna Loa, March 1958 – December 2001, in ppm (2,284 values, column
    ``"co2"``), from ``statsmodels.datasets.co2`` (Keeling & Whorf, Scripps Institution of
    Oceanography).

    59 weeks are missing (runs of up to 18 weeks). They are filled by linear interpolation between
    the nearest recorded weeks on either side — the samples are evenly spaced, so interpolating in
    position equals interpolating in time. The first and last weeks are recorded, so no value is
    extrapolated.
    """
    y = _datasets().co2.load_pandas().data["co2"].to_numpy(dtype=np.float64, copy=True)
    missing = np.isnan(y)
    t = np.arange(len(y))
    y[missing] = np.interp(t[missing], t[~missing], y[~missing])
    return Series(torch.tensor(y, dtype=torch.float32).unsqueeze(1), ["co2"])
