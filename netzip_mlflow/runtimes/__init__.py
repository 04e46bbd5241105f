"""Deployment runtimes (ONNX Runtime, OpenVINO): the interface the evaluator measures them through.

A model exported to a runtime is a :class:`~netzip_mlflow.runtimes.base.RuntimeModel`: an
``nn.Module`` whose forward runs the runtime's own session, so accuracy, latency and the isolated
worker treat it like any torch model, while MACs, CHATS, size and the thread setting come from the
runtime (see :mod:`netzip_mlflow.runtimes.base`). The runtime libraries are optional extras
(``[onnx]``, ``[openvino]``) imported only when a runtime is used.
"""
