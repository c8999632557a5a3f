-- Tenancy: which tenant a session acts for, the check every tenant function makes, the
-- row-level-security policies of the tenant role, and the provisioning of tenant logins.
-- docs/security.md says who is trusted with what.
--
-- A session's tenant is decided by its role (the login, or the role it SET ROLE to):
--   - a role bound in tenant_logins acts for that tenant, whatever it sets;
--   - a member of batchctl_gateway (trusted to choose) acts for the tenant named by the
--     batchctl.tenant_id setting (per transaction: SET LOCAL, or set_config(..., true));
--   - any other member of batchctl_tenant acts for no tenant and may do nothing.
-- Workers, the owner and superusers are not restricted to one tenant.

-- The caller's role. In a SECURITY DEFINER function current_user is the function's owner, so
-- this reads what the session chose instead; SET ROLE accepts only roles the login is a member
-- of, so a session cannot name a role it could not act as anyway.
CREATE OR REPLACE FUNCTION batchctl.session_role()
RETURNS name LANGUAGE sql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT coalesce(nullif(current_setting('role'), 'none'), session_user)::name $$;

-- The tenant the session acts for, or null. Policies call it once per statement (an InitPlan).
CREATE OR REPLACE FUNCTION batchctl.session_tenant()
RETURNS uuid LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT l.tenant_id FROM batchctl.tenant_logins l WHERE l.role_name = batchctl.session_role()),
        -- (A CASE, not AND: the setting is read, and cast, only for a gateway.)
        CASE WHEN pg_has_role(batchctl.session_role(), 'batchctl_gateway', 'USAGE')
             THEN nullif(btrim(current_setting('batchctl.tenant_id', true)), '')::uuid
        END)
$$;

-- Whether the session is confined to one tenant: a batchctl_tenant member that is not also a
-- worker (superusers count as workers: pg_has_role is true for them).
CREATE OR REPLACE FUNCTION batchctl.session_is_tenant()
RETURNS boolean LANGUAGE sql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    SELECT pg_has_role(batchctl.session_role(), 'batchctl_tenant', 'MEMBER')
       AND NOT pg_has_role(batchctl.session_role(), 'batchctl_worker', 'USAGE')
$$;

-- Every tenant function starts here: a tenant session may act only for its own tenant, and
-- another tenant's id is "not found", as row-level security would have it.
CREATE OR REPLACE FUNCTION batchctl.check_tenant(p_tenant_id uuid)
RETURNS void LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_own uuid;
BEGIN
    IF p_tenant_id IS NULL THEN
        RAISE EXCEPTION 'p_tenant_id must not be null' USING ERRCODE = 'BC001';
    END IF;
    IF session_is_tenant() THEN
        v_own := session_tenant();
        IF v_own IS NULL THEN
            RAISE EXCEPTION 'role % acts for no tenant: bind it with batchctl tenant grant-login % TENANT',
                session_role(), session_role()
                USING ERRCODE = '42501',
                      HINT = 'a gateway role (a member of batchctl_gateway) sets batchctl.tenant_id per transaction instead';
        END IF;
        IF v_own <> p_tenant_id THEN
            RAISE EXCEPTION 'tenant % not found', p_tenant_id USING ERRCODE = 'BC002';
        END IF;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM batchctl.tenants WHERE id = p_tenant_id) THEN
        RAISE EXCEPTION 'tenant % not found', p_tenant_id USING ERRCODE = 'BC002';
    END IF;
END
$$;

-- Row-level security for the tenant role: a session sees the rows of the tenant it acts for,
-- and nothing without one. (Workers have their own policies, migrations/0002.) Replaced on
-- every upgrade, as the functions they call are.
DROP POLICY IF EXISTS tenant_isolation ON batchctl.tenants;
CREATE POLICY tenant_isolation ON batchctl.tenants TO batchctl_tenant
    USING (id = (SELECT batchctl.session_tenant()));
DO $$
DECLARE
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['dnc_numbers', 'batches', 'batch_entries', 'call_logs', 'events',
                                   'reports', 'hangups', 'intake_refusals', 'trunks', 'caller_ids',
                                   'caller_id_days', 'webhook_endpoints', 'webhook_deliveries',
                                   'webhook_attempts'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON batchctl.%I', v_table);
        EXECUTE format('CREATE POLICY tenant_isolation ON batchctl.%I TO batchctl_tenant
                            USING (tenant_id = (SELECT batchctl.session_tenant()))', v_table);
    END LOOP;
END
$$;

-- Provisioning (the owner's: granted to no role, like prune). Binds p_role to the tenant and
-- makes it a member of batchctl_tenant if it is not one; repeating it changes nothing. A role
-- bound to another tenant must be revoked first: moving a login between tenants is a decision,
-- not a side effect.
CREATE OR REPLACE FUNCTION batchctl.grant_tenant_login(p_role name, p_tenant_id uuid)
RETURNS void LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_bound uuid;
BEGIN
    IF p_role IS NULL OR to_regrole(quote_ident(p_role)) IS NULL THEN
        RAISE EXCEPTION 'role % not found', coalesce(quote_literal(p_role), 'null')
            USING ERRCODE = 'BC002', HINT = 'create the login first: CREATE ROLE ... LOGIN';
    END IF;
    IF p_role IN ('batchctl_tenant', 'batchctl_worker', 'batchctl_gateway', 'batchctl_agent')
       OR pg_has_role(p_role, 'batchctl_worker', 'USAGE') THEN
        RAISE EXCEPTION 'role % sees every tenant (a superuser, a worker or a batchctl role); bind a login of its own',
            p_role USING ERRCODE = 'BC001';
    END IF;
    IF p_tenant_id IS NULL OR NOT EXISTS (SELECT 1 FROM tenants WHERE id = p_tenant_id) THEN
        RAISE EXCEPTION 'tenant % not found', coalesce(p_tenant_id::text, 'null') USING ERRCODE = 'BC002';
    END IF;
    SELECT tenant_id INTO v_bound FROM tenant_logins WHERE role_name = p_role FOR UPDATE;
    IF v_bound <> p_tenant_id THEN
        RAISE EXCEPTION 'role % is bound to tenant % already', p_role, v_bound
            USING ERRCODE = 'BC003', HINT = 'revoke it first: batchctl tenant revoke-login ROLE';
    END IF;
    IF NOT pg_has_role(p_role, 'batchctl_tenant', 'MEMBER') THEN
        EXECUTE format('GRANT batchctl_tenant TO %I', p_role);
    END IF;
    INSERT INTO tenant_logins (role_name, tenant_id) VALUES (p_role, p_tenant_id)
    ON CONFLICT (role_name) DO NOTHING;
END
$$;

-- Removes p_role's binding; true if it had one. Its membership of batchctl_tenant stays (an
-- unbound tenant login can do nothing); REVOKE it, or DROP ROLE, to remove the login for good.
CREATE OR REPLACE FUNCTION batchctl.revoke_tenant_login(p_role name)
RETURNS boolean LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM tenant_logins WHERE role_name = p_role;
    RETURN FOUND;
END
$$;
