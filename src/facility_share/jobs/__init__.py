"""Background work from the database: a jobs table, claimed with SKIP LOCKED, leased, retried.

``enqueue`` adds a job to the caller's transaction; ``handler`` registers what runs a kind;
``facility_share.jobs.runner.Worker`` runs them (``facility-share worker``, or in-process in
SQLite mode). See ``queue`` and ``runner`` for the guarantees.
"""

from facility_share.jobs.queue import HANDLERS, Permanent, enqueue, enqueue_many, handler

__all__ = ["HANDLERS", "Permanent", "enqueue", "enqueue_many", "handler"]
