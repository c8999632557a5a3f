-- A dispatch whose outcome is unknown keeps its call slot (issue: the cap must hold at LiveKit,
-- not only in our rows). When CreateDispatch timed out, or a daemon died after sending it,
-- LiveKit may have the call although no call log says so; the entry used to go back to the
-- queue with its slot freed, and the next entry was dialled beside the live call.
--
-- slot_held_until: a queued entry whose dispatch is unconfirmed counts as in flight for its
-- tenant's and batch's caps until then (its pickup timeout after the dispatch became
-- unconfirmed), unless a claim of it confirms or adopts the dispatch first. Set by the re-queue
-- trigger (sql/032), read by claim_entries (sql/050). Metadata-only: no default.
ALTER TABLE batchctl.batch_entries ADD COLUMN slot_held_until timestamptz;
-- Every claim counts its tenant's held slots: the few unconfirmed rows, whatever the queue's
-- size. (Its predicate's columns are in other partial indexes already: no HOT update is lost.)
CREATE INDEX entries_holding_slots ON batchctl.batch_entries (tenant_id)
    WHERE status = 'queued' AND dispatch_unconfirmed;

-- A claim that may have dialled and ends without a call log (cancelled while claimed, or while
-- its dispatch was unconfirmed) has its room hung up too: such a hang-up has no call log.
-- Its batch's deletion (prune) takes it along.
ALTER TABLE batchctl.hangups ALTER COLUMN call_log_id DROP NOT NULL;
ALTER TABLE batchctl.hangups
    ADD CONSTRAINT hangups_tenant_id_batch_id_fkey FOREIGN KEY (tenant_id, batch_id)
        REFERENCES batchctl.batches (tenant_id, id) ON DELETE CASCADE;
CREATE INDEX hangups_by_batch ON batchctl.hangups (batch_id, tenant_id);
