"""`pipeline run --executor ray`: records cut into blocks, each block run by a Ray task as a worker
joined to the driver's run (its own Session and async engine), the run's request cap and rate limits
held cluster-wide by one Ray actor. Part of the composition root (layer 6): it builds Sessions and
may import the layers below and `runner.session`; nothing below imports it, and Ray itself is
imported only when a Ray run starts (the extra `ray`)."""

from .backend import RAY_EXTRA, ray_session, require_ray

__all__ = ["RAY_EXTRA", "ray_session", "require_ray"]
