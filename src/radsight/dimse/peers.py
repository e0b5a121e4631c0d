"""Remote AEs: the allow list of calling AEs and the destinations for C-MOVE and send."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from radsight.index.models import RemoteAE


def validate_ae_title(title: str) -> str:
    title = title.strip()
    if not title or len(title) > 16 or "\\" in title or not title.isprintable():
        raise ValueError(f"invalid AE title {title!r}: 1-16 printable characters, no backslash")
    return title


def add_peer(session: Session, ae_title: str, host: str, port: int, description: str = "") -> RemoteAE:
    title = validate_ae_title(ae_title)
    if not (0 < port < 65536):
        raise ValueError(f"invalid port {port}")
    if not host:
        raise ValueError("host is required")
    peer = session.scalar(select(RemoteAE).where(RemoteAE.ae_title == title))
    if peer is None:
        peer = RemoteAE(ae_title=title, host=host, port=port, description=description)
        session.add(peer)
    else:
        peer.host, peer.port, peer.description = host, port, description
    session.commit()
    return peer


def list_peers(session: Session) -> list[RemoteAE]:
    return list(session.scalars(select(RemoteAE).order_by(RemoteAE.ae_title)))


def get_peer(session: Session, ae_title: str) -> RemoteAE | None:
    return session.scalar(select(RemoteAE).where(RemoteAE.ae_title == ae_title.strip()))


def remove_peer(session: Session, ae_title: str) -> bool:
    result = session.execute(delete(RemoteAE).where(RemoteAE.ae_title == ae_title.strip()))
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]
