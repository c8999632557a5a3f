-- next_dial_at (the call window's next opening for an entry) has had no caller since
-- next_allowed (sql/027) answers for the window, the rules and the holidays together.
DROP FUNCTION IF EXISTS batchctl.next_dial_at(jsonb, text, timestamptz);
