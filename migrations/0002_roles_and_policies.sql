-- Roles and row-level security.
--   batchctl_tenant: tenant-facing services. Sees only rows of the tenant named by the
--                    `batchctl.tenant_id` setting; calls the tenant API functions.
--   batchctl_worker: the daemon and cron's sweep. Sees every tenant; calls the worker functions.
-- Roles are cluster-wide, so create them only when missing (several databases share a server).
-- Function grants are in sql/grants.sql, re-applied with the functions.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'batchctl_tenant') THEN
        CREATE ROLE batchctl_tenant NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'batchctl_worker') THEN
        CREATE ROLE batchctl_worker NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA batchctl TO batchctl_tenant, batchctl_worker;
GRANT SELECT ON batchctl.tenants, batchctl.dnc_numbers, batchctl.batches, batchctl.batch_entries,
    batchctl.call_logs, batchctl.events, batchctl.reports TO batchctl_tenant, batchctl_worker;

ALTER TABLE batchctl.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE batchctl.dnc_numbers ENABLE ROW LEVEL SECURITY;
ALTER TABLE batchctl.batches ENABLE ROW LEVEL SECURITY;
ALTER TABLE batchctl.batch_entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE batchctl.call_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE batchctl.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE batchctl.reports ENABLE ROW LEVEL SECURITY;

-- An unset or empty setting matches nothing (NULL), so a tenant session that forgot to set it
-- sees no rows rather than all of them.
CREATE POLICY tenant_isolation ON batchctl.tenants TO batchctl_tenant
    USING (id = nullif(current_setting('batchctl.tenant_id', true), '')::uuid);
CREATE POLICY tenant_isolation ON batchctl.dnc_numbers TO batchctl_tenant
    USING (tenant_id = nullif(current_setting('batchctl.tenant_id', true), '')::uuid);
CREATE POLICY tenant_isolation ON batchctl.batches TO batchctl_tenant
    USING (tenant_id = nullif(current_setting('batchctl.tenant_id', true), '')::uuid);
CREATE POLICY tenant_isolation ON batchctl.batch_entries TO batchctl_tenant
    USING (tenant_id = nullif(current_setting('batchctl.tenant_id', true), '')::uuid);
CREATE POLICY tenant_isolation ON batchctl.call_logs TO batchctl_tenant
    USING (tenant_id = nullif(current_setting('batchctl.tenant_id', true), '')::uuid);
CREATE POLICY tenant_isolation ON batchctl.events TO batchctl_tenant
    USING (tenant_id = nullif(current_setting('batchctl.tenant_id', true), '')::uuid);
CREATE POLICY tenant_isolation ON batchctl.reports TO batchctl_tenant
    USING (tenant_id = nullif(current_setting('batchctl.tenant_id', true), '')::uuid);

CREATE POLICY worker_all ON batchctl.tenants TO batchctl_worker USING (true);
CREATE POLICY worker_all ON batchctl.dnc_numbers TO batchctl_worker USING (true);
CREATE POLICY worker_all ON batchctl.batches TO batchctl_worker USING (true);
CREATE POLICY worker_all ON batchctl.batch_entries TO batchctl_worker USING (true);
CREATE POLICY worker_all ON batchctl.call_logs TO batchctl_worker USING (true);
CREATE POLICY worker_all ON batchctl.events TO batchctl_worker USING (true);
CREATE POLICY worker_all ON batchctl.reports TO batchctl_worker USING (true);
