"""The functional core of Refinery: pure, deterministic, no Kafka, no asyncio, no clock.

>>> from pipeline import Refiner, RefinerConfig
>>> r = Refiner(dataset="support", config=RefinerConfig(validation_window=100), seed=0)
>>> r.metrics(now=0).rating.band
'Poor'
"""

from pipeline.config import RefinerConfig
from pipeline.engine import Engine, suggestion_list, suggestion_lists
from pipeline.refiner import Refiner, ReviewOutcome

__all__ = ["Engine", "Refiner", "RefinerConfig", "ReviewOutcome", "suggestion_list", "suggestion_lists"]
