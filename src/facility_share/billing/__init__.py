"""Fees: pricing of services from the published fee schedules (integer fen throughout)."""
