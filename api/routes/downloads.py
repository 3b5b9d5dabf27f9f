"""Local download links: `/downloads/{key}?expires=&signature=`; the signature is the authority."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from api.deps import ServicesDep
from api.errors import FileGone
from api.files import FILE_GONE, check_downloadable, check_link, friendly_name, job_id_of
from api.schemas import ErrorBody
from flows.datapath.writers import XLSX_MEDIA_TYPE

router = APIRouter(tags=["downloads"])

FILE = {"schema": {"type": "string", "format": "binary"}}
FILE_TYPES = {
    "text/csv": FILE,
    "application/gzip": FILE,
    "application/zip": FILE,
    XLSX_MEDIA_TYPE: FILE,
}


@router.head("/downloads/{key:path}", include_in_schema=False)
@router.get(
    "/downloads/{key:path}",
    response_class=FileResponse,
    responses={
        200: {"content": FILE_TYPES, "description": "The file"},
        206: {"content": FILE_TYPES, "description": "The requested byte range"},
        403: {"model": ErrorBody, "description": "Altered or forged link"},
        404: {"model": ErrorBody, "description": "No such link (a key no export has)"},
        410: {"model": ErrorBody, "description": "Expired link or file"},
        416: {"description": "A range outside the file"},
        422: {"model": ErrorBody, "description": "`expires` or `signature` missing or malformed"},
        503: {"model": ErrorBody, "description": "The database or the storage is unavailable"},
    },
)
def download_file(
    key: str,
    services: ServicesDep,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query()],
) -> FileResponse:
    """The file behind a signed link, with Range, If-Range and HEAD (Starlette's FileResponse)."""
    storage = services.storage
    check_link(storage, key, expires, signature)
    job_id = job_id_of(key)
    job = services.jobs.get(job_id) if job_id is not None else None
    if job is None or job.file_key != key or storage.scheme != "file":
        raise FileGone(FILE_GONE.format(id=job_id))
    check_downloadable(job)
    path = Path(storage.path(key))
    if not path.is_file():
        raise FileGone(FILE_GONE.format(id=job_id))
    return FileResponse(
        path,
        # Starlette would guess text/csv from `.csv.gz` and send gzip bytes under it; the
        # direct response for the same export says application/gzip.
        media_type="application/gzip" if key.endswith(".gz") else None,
        filename=friendly_name(job),
        # A strong validator from the content, so If-Range resumes only the same bytes.
        headers={"ETag": f'"{job.sha256}"'} if job.sha256 else None,
    )
