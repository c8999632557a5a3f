-- Tenant logins (SPEC §8): a login is bound to its tenant in the database. Until now a
-- batchctl_tenant session named its own tenant with the batchctl.tenant_id setting, so any
-- tenant login could become any tenant by setting another id. Now:
--   tenant_logins     binds a role (a login, or a role it SETs ROLE to) to one tenant; row-level
--                     security and check_tenant read the binding (sql/015_tenancy.sql), never a
--                     setting, for every batchctl_tenant member that is bound;
--   batchctl_gateway  a member of batchctl_tenant that is trusted to choose the tenant per
--                     transaction with the setting (a service that authenticated its users);
--   batchctl_agent    the voice agent: may report call statuses, nothing else.
-- The tenant policies move to sql/015_tenancy.sql, which replaces them on every upgrade (they
-- call batchctl.session_tenant(), defined there).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'batchctl_gateway') THEN
        CREATE ROLE batchctl_gateway NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'batchctl_agent') THEN
        CREATE ROLE batchctl_agent NOLOGIN;
    END IF;
END
$$;

GRANT batchctl_tenant TO batchctl_gateway;
GRANT USAGE ON SCHEMA batchctl TO batchctl_agent;

-- Small and read by every tenant query (once per statement): a Citus reference table, like
-- tenants. Keyed by role name, not OID, so a dump restored on another server keeps it; a role
-- that is renamed loses its binding (and then may do nothing), one dropped and re-created
-- under the same name gets it back.
CREATE TABLE batchctl.tenant_logins (
    role_name  name PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES batchctl.tenants (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tenant_logins_by_tenant ON batchctl.tenant_logins (tenant_id);
