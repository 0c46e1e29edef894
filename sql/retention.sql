-- fractality: retention
-- What to archive or drop, and when. run_maintenance() applies these policies.

CREATE TABLE fractality.retention_policies (
    relation    regclass    PRIMARY KEY,
    keep        interval    NOT NULL,
    action      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_run    timestamptz,
    last_result bigint,
    CONSTRAINT retention_policies_keep_positive CHECK (keep > interval '0'),
    CONSTRAINT retention_policies_action CHECK (action IN ('archive', 'drop'))
);

COMMENT ON TABLE fractality.retention_policies IS
    'Per partitioned table: keep this long, then archive or drop; last run and its result.';
