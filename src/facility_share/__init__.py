"""facility-share: a district's shared large-instrument and pilot-workshop platform."""

__version__ = "0.1.0"
