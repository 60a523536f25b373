"""Demo data: what `make run` loads so that every feature can be tried right away."""

from __future__ import annotations

TOUR = """\
facility-share is ready at http://{host}:{port}/

  Catalogue (no login):   http://{host}:{port}/catalog
  A workshop:             http://{host}:{port}/resources/{workshop}
  Managing units:         http://{host}:{port}/units
  JSON API and its docs:  http://{host}:{port}/schema/docs   (OpenAPI: /schema/openapi.json)
  Catalogue export (CSV): http://{host}:{port}/api/v1/catalog/export.csv
  Health:                 http://{host}:{port}/healthz
  English pages:          add ?lang=en to any page, or use the switch in the header
"""
