"""Low-level pieces shared by every package: errors, durable writes, safe names, DICOM header
reading and time parsing, voxel grids and their tolerances, process lifetime.

``dicom_node``, ``models`` and ``sample_data`` import from ``triage`` only this package, so none of
them reaches into the imaging pipeline or the service. It imports nothing else of the project.
"""
