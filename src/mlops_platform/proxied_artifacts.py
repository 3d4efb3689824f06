"""In the proxied artifact mode every artifact byte passes through the kit's proxy.

MLflow 3.17's server tells clients (``/api/3.0/mlflow/server-info``) that an S3 artifact
store supports multipart uploads and downloads, and MLflow's client then moves the bytes
of every download, and of every upload of 500 MB or more, straight to and from the store
with presigned URLs that the server signs for the store's address as the server sees it.
Behind the kit that address is an internal one (``http://seaweedfs:8333`` in compose, a
cluster service in Kubernetes): a client outside cannot reach it, so its downloads fail;
and where it can, the transfer bypasses the proxy's log, limits and lockout, and a URL
keeps working for its lifetime after the user's permission is taken away.

So, when the server serves artifacts itself (``--serve-artifacts``, the kit's
``MLOPS_ARTIFACT_MODE=proxied``):

- server-info reports ``multipart_uploads_enabled`` and ``multipart_downloads_enabled``
  as false, all else as MLflow builds it: MLflow's client uses the proxied routes, which
  the kit streams both ways (:mod:`mlops_platform.artifact_stream`,
  :mod:`mlops_platform.artifact_upload`);
- the endpoints that mint store URLs (multipart create, presigned download, presigned
  upload and download URLs) answer as MLflow does for a store that does not support them
  (``NOT_IMPLEMENTED`` with MLflow's own message), after MLflow's permission check as
  before; a client forced onto them (``MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD=true``) falls
  back to the proxied route, as MLflow's client does for such a store.

``MLOPS_ARTIFACT_MODE=direct`` is the mode for clients that reach the store themselves.
"""

from __future__ import annotations

from typing import Any

SERVER_INFO_PATHS = ("/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info")
STORE_URL_FLAGS = ("multipart_uploads_enabled", "multipart_downloads_enabled")
# MLflow's Flask endpoints that hand out store URLs, and the exception MLflow raises
# from each when the store does not support it (``mlflow.exceptions``).
REFUSED_VIEWS = {
    "_create_multipart_upload_artifact": "_UnsupportedMultipartUploadException",
    "_get_presigned_download_url": "_UnsupportedMultipartDownloadException",
    "_create_presigned_upload_url": "_UnsupportedPresignedUploadException",
    "_create_presigned_download_url": "_UnsupportedPresignedDownloadException",
}


def serving_artifacts() -> bool:
    from mlflow.server.artifact_router import _is_serving_proxied_artifacts

    return bool(_is_serving_proxied_artifacts())


def proxied_server_info(payload: dict[str, Any]) -> dict[str, Any]:
    """MLflow's server-info PAYLOAD with the store-URL capabilities off."""
    return {**payload, **dict.fromkeys(STORE_URL_FLAGS, False)}


def _refusing(endpoint: str, exception: type[Exception]) -> Any:
    from mlflow.server import handlers

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise exception()

    refuse.__name__ = endpoint
    return handlers.catch_mlflow_exception(refuse)


async def server_info() -> Any:
    """MLflow's server-info view (``mlflow.server.server_info_api``), store URLs off."""
    import anyio
    from fastapi.responses import JSONResponse
    from mlflow.exceptions import MlflowException
    from mlflow.server import server_info_api as upstream
    from mlflow.server.mlflow_response import mlflow_exception_response

    try:
        payload = await anyio.to_thread.run_sync(
            upstream.build_server_info_payload, limiter=upstream._SERVER_INFO_LIMITER
        )
    except MlflowException as exc:
        return mlflow_exception_response(exc, handler_name="get_server_info")
    return JSONResponse(content=proxied_server_info(payload))


def install(app: Any) -> bool:
    """With the server serving artifacts, put the server-info view in front of MLflow's in
    ``app`` and refuse MLflow's store-URL views in its Flask app; False (nothing changed)
    otherwise. Raises RuntimeError when MLflow's views are not where the kit knows them."""
    if not serving_artifacts():
        return False
    from fastapi.routing import APIRoute
    from mlflow import exceptions
    from mlflow.server import app as flask_app
    from mlflow.server import server_info_api

    known = {r.path for r in server_info_api.server_info_router.routes if isinstance(r, APIRoute)}
    missing = [p for p in SERVER_INFO_PATHS if p not in known]
    missing += [e for e in REFUSED_VIEWS if flask_app.view_functions.get(e) is None]
    missing += [name for name in REFUSED_VIEWS.values() if not hasattr(exceptions, name)]
    if not hasattr(server_info_api, "build_server_info_payload"):
        missing.append("server_info_api.build_server_info_payload")
    if missing:
        raise RuntimeError(
            f"mlops-platform: MLflow's {', '.join(missing)} not where the kit expects; "
            "this MLflow is not the one it knows"
        )
    for endpoint, name in REFUSED_VIEWS.items():
        flask_app.view_functions[endpoint] = _refusing(endpoint, getattr(exceptions, name))
    for path in SERVER_INFO_PATHS:
        app.router.routes.insert(
            0, APIRoute(path, server_info, methods=["GET"], include_in_schema=False)
        )
    return True
