"""Availability, booking rules, the booking lifecycle and the capacity invariant."""
