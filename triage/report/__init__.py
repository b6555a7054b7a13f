"""One analysis written to its result folder: ``result.json``, NIfTI maps and masks, pictures.

:mod:`triage.report.folder` owns the folder's layout and reads it back (for the DICOM export,
the node and the web API); :func:`triage.report.outputs.write_outputs` writes it, all or nothing.
"""
