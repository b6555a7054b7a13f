"""The imaging pipeline: 4D assembly from DICOM, motion correction, bolus timing, tissue masks,
AIF/VOF, denoising, deconvolution (``models``), lesion volumes and trial criteria.

:func:`triage.imaging.pipeline.analyse` runs the stages in order on one assembled series; each
stage is a module with a plain interface, tested alone.
"""
