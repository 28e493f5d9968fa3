"""Stream glue: which TCP flows are DICOM or TLS, and their stream handlers.

``detect`` decides per flow (configured ports, or a plausible A-ASSOCIATE-RQ as the first
bytes) and makes the handler: ``dicom.DicomFlowHandler`` feeds the sans-IO core and hands
its events on, ``tls.TlsFlowHandler`` counts TLS handshakes. Handlers reach the sinks only
through an ``emitter.Emitter``; ``context.FlowContext`` is what sinks learn of a flow.
A new stream protocol is a module here (its handler and its first-bytes check) and one
branch in ``detect.StreamDetector.classify``.
"""
