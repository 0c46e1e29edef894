-- Tenant, label and metadata of the members of a consensus ($1: node ids).
SELECT n.user_id, n.label, n.metadata FROM fractality.nodes n WHERE n.id = ANY($1) ORDER BY n.id
