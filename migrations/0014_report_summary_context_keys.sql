-- report_summary returns the context keys of a batch's leads too (the Calls sheet's columns)
-- and how many contexts it may have to show whole: a function's result type cannot be
-- replaced, so sql/085_report_views.sql creates it anew (and sql/090 grants it again).
DROP FUNCTION IF EXISTS batchctl.report_summary(uuid);
