"""Running the study: the per-stage context the notebooks open, and the notebook runner (`make all`)."""

from .context import StageContext, open_stage

__all__ = ["StageContext", "open_stage"]
