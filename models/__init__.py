"""Tracer-kinetic models and lesion threshold profiles."""
