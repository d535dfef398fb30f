"""The Open Inference Protocol (KServe V2) REST API with Triton's binary tensor data and
schedule-policy extensions, served by the same engine as ``/predict``.

``routes`` holds the HTTP surface, ``infer`` the inference path, ``codec`` and ``tensors``
the wire formats, ``datatypes`` the datatype table and ``errors`` the V2 status table.
"""
