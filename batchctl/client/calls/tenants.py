"""Tenants, their logins and their do-not-call lists (sql/015, sql/040)."""

from __future__ import annotations

from uuid import UUID

from batchctl.client.calls import Call, scalar, void


def create_tenant(name: str, max_concurrent_calls: int = 3, timezone: str = "UTC") -> Call[UUID]:
    q = "SELECT batchctl.create_tenant(%s, %s, %s)"
    return scalar(q, name, max_concurrent_calls, timezone)


def add_dnc(tenant_id: UUID, *phones: str) -> Call[None]:
    """Each number in turn, in one statement (an import adds thousands)."""
    q = "SELECT batchctl.add_dnc(%s, phone) FROM unnest(%s::text[]) AS phone"
    return void(q, tenant_id, list(phones))


def grant_tenant_login(role: str, tenant_id: UUID) -> Call[None]:
    return void("SELECT batchctl.grant_tenant_login(%s, %s)", role, tenant_id)


def revoke_tenant_login(role: str) -> Call[bool]:
    """False: the role was bound to no tenant."""
    return scalar("SELECT batchctl.revoke_tenant_login(%s)", role)
