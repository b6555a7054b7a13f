"""The DICOM result objects of one result folder, for PACS: RGB Secondary Captures, a
Segmentation and a Comprehensive SR (TID 1500), built with highdicom
(:func:`triage.dicom_out.export.write_result_objects`).
"""
