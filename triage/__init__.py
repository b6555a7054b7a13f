"""Stroke imaging triage: CT perfusion maps, ischemic core and hypoperfusion volumes.

Research use only: this software has not been clinically validated.
"""

__version__ = "0.1.0"
