"""The AI engine: model packages, routing, a durable job queue, inference, results as DICOM.

Data flow::

    ingest StoredEvent -> stability.py (series/study stable) -> routing.py (which models)
      -> jobs.py (durable queue in the index DB) -> worker.py (in-process pool; Celery later)
      -> pipeline.py (load series -> preprocess -> ONNX Runtime -> postprocess)
      -> results/ (SEG, SR TID 1500, parametric map via highdicom) -> ingest (stored back)
      -> findings.py (ai_finding rows) -> REST /api/studies/{uid}/findings, viewer, worklist

Serving never needs PyTorch: pre/post-processing use numpy/scipy (MONAI needs torch);
training (``radsight[train]``) uses MONAI.
"""
