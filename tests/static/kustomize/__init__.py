"""The Kustomize base, its overlays and the rendered overlay, built by `kubectl kustomize`.

Every overlay in deploy/kubernetes and one rendered from a cloud-style settings set are
built offline with the real kubectl and validated strictly against the Kubernetes 1.37
schemas; the behaviours the issue asks for are asserted on the built objects.
"""
