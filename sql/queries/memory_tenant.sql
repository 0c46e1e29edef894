-- remember, recall, forget: the tenant they act in, fractality.current_user_id() (NULL when
-- fractality.user_id is unset, an error when it is not a uuid). No parameters.
SELECT fractality.current_user_id()
