-- What LiveKit's webhooks tell us about a room's call, for batchctl.webhook. The call log of a
-- room is call_log_id(room); specific outcomes (the callee declined, did not answer) go through
-- report_call_status like any other report.

-- LiveKit says a room's call is over without saying how it went (the room closed, the callee
-- left for no reported reason): a call that was answered ended, one that was not failed.
-- Returns the entry's status after; NULL for a room that is not one of batchctl's.
CREATE OR REPLACE FUNCTION batchctl.room_call_over(p_room_name text, p_reason text)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_call call_logs;
BEGIN
    SELECT * INTO v_call FROM call_logs WHERE id = call_log_id(p_room_name);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_call.status = 'ongoing' THEN
        RETURN report_call_status(v_call.id, 'ended', jsonb_build_object('ended_by', left(p_reason, max_text_length())));
    END IF;
    RETURN report_call_status(v_call.id, 'failed', jsonb_build_object('error', left(p_reason, max_text_length())));
END
$$;
