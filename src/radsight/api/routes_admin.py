"""REST API for administration: remote AEs and users."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from radsight.api.auth import add_user
from radsight.api.deps import AdminUser, SessionDep
from radsight.api.schemas import RemoteAEIn, RemoteAEOut, UserIn, UserOut
from radsight.dimse.peers import add_peer, list_peers, remove_peer

router = APIRouter(prefix="/api", tags=["admin"])


@router.get("/aes")
def aes_list(session: SessionDep, _: AdminUser) -> list[RemoteAEOut]:
    return [RemoteAEOut(ae_title=p.ae_title, host=p.host, port=p.port, description=p.description)
            for p in list_peers(session)]


@router.put("/aes/{ae_title}")
def aes_put(ae_title: str, body: RemoteAEIn, session: SessionDep, _: AdminUser) -> RemoteAEOut:
    if body.ae_title != ae_title:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "AE title in the path and body differ")
    try:
        p = add_peer(session, body.ae_title, body.host, body.port, body.description)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return RemoteAEOut(ae_title=p.ae_title, host=p.host, port=p.port, description=p.description)


@router.delete("/aes/{ae_title}", status_code=status.HTTP_204_NO_CONTENT)
def aes_delete(ae_title: str, session: SessionDep, _: AdminUser) -> None:
    if not remove_peer(session, ae_title):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no remote AE {ae_title!r}")


@router.post("/users", status_code=status.HTTP_201_CREATED)
def users_add(body: UserIn, session: SessionDep, _: AdminUser) -> UserOut:
    try:
        u = add_user(session, body.username, body.password, body.role)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return UserOut(username=u.username, role=u.role)
