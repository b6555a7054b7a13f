"""The DICOM node behind ``triage serve``: the threads that take a received series from
completion to analysis (in a child process), to the PACS and to the stroke team's alerts.
"""
