"""DICOM networking: storage SCP, durable spool, series completion, C-STORE SCU."""
