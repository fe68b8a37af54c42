"""The science of canfar-catalogue: a MegaCam exposure becomes a SExtractor catalogue.

Pure library: no Prefect, no network, no I/O beyond reading the exposure it
is given and writing the catalogue it is asked for.

>>> from canfar_catalogue.science import load_config, run_exposure
>>> config = load_config(overrides=["-MAG_ZEROPOINT", "30"])
>>> result = run_exposure("1056213p.fits.fz", config, "1056213p.cat")  # doctest: +SKIP
"""

from .catalogue import write_catalogue
from .errors import CCDError, ConfigError, ExposureError, InputError
from .exposure import CCD, list_ccds, read_ccd
from .measure import measure_ccd
from .pipeline import measure_exposure, run_exposure
from .results import CCDResult, ExposureResult
from .sexconfig import ExtractionConfig, load_config

__all__ = [
    "CCD",
    "CCDError",
    "CCDResult",
    "ConfigError",
    "ExposureError",
    "ExposureResult",
    "ExtractionConfig",
    "InputError",
    "list_ccds",
    "load_config",
    "measure_ccd",
    "measure_exposure",
    "read_ccd",
    "run_exposure",
    "write_catalogue",
]
