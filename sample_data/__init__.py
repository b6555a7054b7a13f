"""Synthetic CT perfusion phantom with known truth."""
