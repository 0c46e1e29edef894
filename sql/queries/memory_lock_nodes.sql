-- remember_many: the stored memories of tenant $1 it deletes or reinforces ($2), locked in the
-- order of their ids (the rows are locked as the sort returns them), as every writer of several
-- memories locks them.
SELECT n.id FROM fractality.nodes n
 WHERE n.user_id = $1 AND n.id = ANY($2)
 ORDER BY n.id
   FOR UPDATE
