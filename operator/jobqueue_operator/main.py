"""kopf registrations and start-up settings only: ``kopf run -m jobqueue_operator.main``.

The handlers are plain functions in jobqueue_operator.handlers; run.py starts the same
registrations in-process for ``job-queue-system --role=operator``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from jobqueue_operator.handlers import autoscale, metrics_api, reconcile
from jobqueue_operator.handlers.common import kube_of
from jobqueue_operator.kube import Kube
from jobqueue_operator.models import GROUP, PLURAL, VERSION

#: Finalizer and annotation prefix: ours, not kopf's default kopf.zalando.org.
FINALIZER = f"{GROUP}/finalizer"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # No CRD/namespace scanning: the JobQueue CRD exists before the operator starts (Helm installs
    # crds/ first), and namespaces are named (--namespace) or all (--all-namespaces), never globs.
    # This keeps the RBAC to the namespaced rules in rbac.py.
    settings.scanning.disabled = True
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.reporting_component = "jobqueue-operator"
    settings.posting.event_name_prefix = "jobqueue-"
    settings.posting.level = logging.WARNING  # our own Events are explicit; no "handler succeeded" noise
    settings.networking.error_backoffs = [1, 2, 5]
    settings.watching.server_timeout = 300
    memo["kube"] = Kube(settings)
    memo["shutdown"] = asyncio.Event()
    memo["daemons"] = set()


@kopf.on.startup()
async def start_metrics_api(memo: kopf.Memo, **_: Any) -> None:
    # After configure (kopf runs startup handlers in registration order): needs memo["kube"].
    metrics_api.start(memo, kube_of(memo))


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, else the kubeconfig: no Kubernetes client library needed."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def stop_autoscalers(memo: kopf.Memo, **_: Any) -> None:
    await autoscale.shutdown(memo)


@kopf.on.cleanup()
async def stop_metrics_api(memo: kopf.Memo, **_: Any) -> None:
    await metrics_api.stop(memo)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile_jobqueue(**kwargs: Any) -> None:
    await reconcile.reconcile(**kwargs)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def jobqueue_deleted(**kwargs: Any) -> None:
    await reconcile.deleted(**kwargs)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def autoscaler(**kwargs: Any) -> None:
    await autoscale.run(**kwargs)
