-- The session's tenant: fractality.current_user_id(), NULL when fractality.user_id is unset, an
-- error when it is not a uuid (run only when the setting does not parse as one in its common
-- forms: src/tenant.rs). No parameters.
SELECT fractality.current_user_id()
