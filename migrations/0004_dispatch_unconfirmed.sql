-- An entry put back in the queue after a claim that may have dialled (its lease ran out, or its
-- dispatch failed in a way that leaves LiveKit's side unknown, such as a timeout): its call may
-- be live at LiveKit although no call log says so. Until a claim of it is acknowledged, its
-- number counts as busy for the tenant's other batches. Metadata-only with a constant default.
ALTER TABLE batchctl.batch_entries
    ADD COLUMN dispatch_unconfirmed boolean NOT NULL DEFAULT false;
