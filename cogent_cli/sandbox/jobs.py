"""Bulk jobs: recorded already done (the sandbox applies them synchronously), answered `queued` when
created as Klaviyo's are, and read back from their GET endpoints `processing` for the sandbox's
`job_seconds`, then `complete`."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.responses import Response

from cogent_cli.sandbox.calls import Call, handles
from cogent_cli.sandbox.jsonapi import iso, json_response, not_found, now
from cogent_cli.sandbox.store import new_short_id

# Job type -> its collection path, and the GET operation reading it.
JOB_PATHS = {
    "profile-bulk-import-job": "profile-bulk-import-jobs",
    "profile-suppression-bulk-create-job": "profile-suppression-bulk-create-jobs",
    "profile-suppression-bulk-delete-job": "profile-suppression-bulk-delete-jobs",
    "catalog-variant-bulk-update-job": "catalog-variant-bulk-update-jobs",
}
JOB_READERS = {
    "get_bulk_import_profiles_job": "profile-bulk-import-job",
    "get_bulk_suppress_profiles_job": "profile-suppression-bulk-create-job",
    "get_bulk_unsuppress_profiles_job": "profile-suppression-bulk-delete-job",
    "get_bulk_update_variants_job": "catalog-variant-bulk-update-job",
}


def job_resource(base_url: str, job: dict[str, Any], *, as_created: bool = False) -> dict[str, Any]:
    attributes = json.loads(job["attributes"])
    running = job.get("ready_at") is not None and time.time() < job["ready_at"]
    if as_created or running:
        attributes = {
            **attributes,
            "status": "queued" if as_created else "processing",
            "completed_count": 0,
            "completed_at": None,
            **({"failed_count": 0} if "failed_count" in attributes else {}),
        }
    resource = {
        "type": job["type"],
        "id": job["id"],
        "attributes": attributes,
        "links": {"self": f"{base_url}/api/{JOB_PATHS[job['type']]}/{job['id']}/"},
    }
    if job["relationships"]:
        resource["relationships"] = json.loads(job["relationships"])
    return resource


def record_job(
    call: Call, job_type: str, attributes: dict[str, Any], relationships: dict[str, Any] | None = None
) -> dict[str, Any]:
    stamp = iso(now())
    job = {
        "id": new_short_id(24),
        "type": job_type,
        "attributes": json.dumps({"status": "complete", "created_at": stamp, "completed_at": stamp, **attributes}),
        "relationships": json.dumps(relationships) if relationships else None,
        "created_at": stamp,
        "ready_at": time.time() + call.job_seconds if call.job_seconds else None,
    }
    call.store.write("jobs", job)
    return job


def job_created(call: Call, job: dict[str, Any]) -> Response:
    """202 with the job as it reads at creation."""
    body = {"data": job_resource(call.base_url, job, as_created=True), "links": {"self": str(call.url)}}
    return json_response(body, 202)


def stored_job(call: Call, job_type: str, job_id: str) -> dict[str, Any]:
    job = call.store.one("select * from jobs where id = ? and type = ?", [job_id, job_type])
    if job is None:
        raise not_found(f"A {job_type} with id '{job_id}' does not exist.")
    return job


@handles(*JOB_READERS)
def get_job(call: Call) -> Response:
    job = stored_job(call, JOB_READERS[call.operation.operation_id], call.path_params["job_id"])
    return json_response({"data": job_resource(call.base_url, job), "links": {"self": str(call.url)}})
