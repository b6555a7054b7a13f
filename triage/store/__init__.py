"""The node's persistent state in SQLite (``DATA/triage.db``): every SQL statement of the
project lives in this package.
"""
